"""POST /v1/chat/completions."""

from flask import Blueprint, Response, current_app, g, jsonify

from lunos.api.auth import require_key
from lunos.api.body import json_body
from lunos.gateway import current_gateway
from lunos.schemas.chat import Bounds, load_chat_request
from lunos.services.chat import ChatStream, Completion, refuse_early

bp = Blueprint("chat", __name__, url_prefix="/v1")


@bp.post("/chat/completions")
@require_key
def chat_completions():
    config, gateway, raw = current_app.config, current_gateway(), json_body()
    refuse_early(gateway, g.caller, raw)
    body = load_chat_request(raw, Bounds(config["MAX_MESSAGES"], config["MAX_CONTENT_PARTS"]))
    completion = Completion(gateway, g.caller, body, g.request_id)
    if not body.get("stream"):
        response = jsonify(completion.answer())
        completion.metered.settle_after(response, current_app._get_current_object())
    else:
        # The body owns the stream: the server's close of it settles, after the last byte.
        response = Response(ChatStream(completion, current_app._get_current_object()), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass chunks on as they come
    response.headers.update(completion.rate_headers)
    return response
