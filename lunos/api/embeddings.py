"""POST /v1/embeddings."""

from flask import Blueprint, current_app, g, jsonify

from lunos.api.auth import require_key
from lunos.api.body import json_body
from lunos.gateway import current_gateway
from lunos.schemas import load
from lunos.schemas.embeddings import EmbeddingRequest
from lunos.services.embeddings import Embedding

bp = Blueprint("embeddings", __name__, url_prefix="/v1")
_schema = EmbeddingRequest()


@bp.post("/embeddings")
@require_key
def embeddings():
    embedding = Embedding(current_gateway(), g.caller, load(_schema, json_body()), g.request_id)
    response = jsonify(embedding.answer())  # orjson (lunos/jsonio.py): megabytes of floats, fast
    embedding.metered.settle_after(response, current_app._get_current_object())
    response.headers.update(embedding.rate_headers)
    return response
