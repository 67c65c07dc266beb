"""POST /v1/chat/completions."""
from flask import Blueprint, Response, current_app, g, jsonify, stream_with_context

from lunos.api.auth import require_key
from lunos.api.body import json_body
from lunos.gateway import current_gateway
from lunos.schemas import load
from lunos.schemas.chat import ChatCompletionRequest
from lunos.services.chat import ChatStream, Completion

bp = Blueprint("chat", __name__, url_prefix="/v1")
_schema = ChatCompletionRequest()


@bp.post("/chat/completions")
@require_key
def chat_completions():
    body = load(_schema, json_body())
    completion = Completion(current_gateway(), g.caller, body, g.request_id)
    if not body.get("stream"):
        response = jsonify(completion.answer())
        response.headers.update(completion.meter.rate_headers)
        return response

    stream = ChatStream(completion)
    response = Response(stream_with_context(stream.events()), mimetype="text/event-stream")
    app = current_app._get_current_object()

    def close():
        # Settles a stream that ended well, after its last byte, and one closed before its body
        # started, which never runs the generator's finally.
        with app.app_context():
            stream.close()

    response.call_on_close(close)
    response.headers.update(completion.meter.rate_headers)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass chunks on as they come
    return response
