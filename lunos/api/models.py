"""GET /v1/models and /v1/models/{id}: the catalog in OpenAI's list shape."""
from flask import Blueprint, jsonify

from lunos.api.auth import require_key
from lunos.errors import ModelNotFound
from lunos.gateway import current_gateway

bp = Blueprint("models", __name__, url_prefix="/v1")


def _describe(model):
    return {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider,
            "context_length": model.context_length, "max_output_tokens": model.max_output_tokens,
            "pricing": {"input_usd_per_mtok": float(model.input_usd_per_mtok),
                        "output_usd_per_mtok": float(model.output_usd_per_mtok)},
            "aliases": list(model.aliases)}


@bp.get("/models")
@require_key
def list_models():
    models = current_gateway().catalog.models.values()
    return jsonify({"object": "list", "data": [_describe(m) for m in models]})


@bp.get("/models/<path:model_id>")
@require_key
def get_model(model_id):
    model = current_gateway().catalog.find(model_id)
    if model is None:
        raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
    return jsonify(_describe(model))
