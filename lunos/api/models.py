"""The catalog: GET /v1/models and /v1/models/{id} in OpenAI's list shape, a model's endpoints
(GET /v1/models/{id}/endpoints) and the providers (GET /v1/providers), with their health."""

from flask import Blueprint, jsonify

from lunos.api.auth import require_key
from lunos.errors import ModelNotFound
from lunos.gateway import current_gateway

bp = Blueprint("models", __name__, url_prefix="/v1")


def _describe(model):
    return {
        "id": model.id,
        "object": "model",
        "created": 0,
        "owned_by": model.provider,
        "type": model.type,
        # an embedding model writes no tokens: null
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens or None,
        "pricing": {
            "input_usd_per_mtok": float(model.input_usd_per_mtok),
            "output_usd_per_mtok": float(model.output_usd_per_mtok),
        },
        "aliases": list(model.aliases),
    }


@bp.get("/models")
@require_key
def list_models():
    models = current_gateway().catalog.models.values()
    return jsonify({"object": "list", "data": [_describe(m) for m in models]})


def _model(model_id):
    model = current_gateway().catalog.find(model_id)
    if model is None:
        raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
    return model


@bp.get("/models/<path:model_id>")
@require_key
def get_model(model_id):
    return jsonify(_describe(_model(model_id)))


def _per_mtok(value):
    return float(value)


def _endpoint(endpoint, health):
    prices = endpoint.prices
    pricing = {
        "input_usd_per_mtok": _per_mtok(prices.input),
        "output_usd_per_mtok": _per_mtok(prices.output),
        "cached_input_usd_per_mtok": _per_mtok(prices.cache_read),
        "cache_write_usd_per_mtok": _per_mtok(prices.cache_write),
        "cache_write_1h_usd_per_mtok": _per_mtok(prices.cache_write_1h),
        "request_usd": float(prices.request),
    }
    if prices.long_context:
        tier = prices.long_context
        pricing["long_context"] = {
            "above_tokens": tier.above_tokens,
            "input_usd_per_mtok": _per_mtok(tier.input),
            "output_usd_per_mtok": _per_mtok(tier.output),
        }
    summary = health.summary(endpoint.key)
    return {
        "provider": endpoint.provider,
        "upstream_model": endpoint.upstream_model,
        "weight": endpoint.weight,
        "pricing": pricing,
        "context_length": endpoint.context_length,
        "max_output_tokens": endpoint.max_output_tokens,
        "supports": sorted(endpoint.supports),
        "data_collection": endpoint.data_collection,
        "zdr": endpoint.zdr,
        "breaker": {
            k: summary[k] for k in ("state", "open_until", "consecutive_failures", "recent_attempts", "recent_failures")
        },
        "ttft_ms": summary["ttft_ms"],
        "tokens_per_second": summary["tokens_per_second"],
    }


@bp.get("/models/<path:model_id>/endpoints")
@require_key
def model_endpoints(model_id):
    model, gateway = _model(model_id), current_gateway()
    gateway.health.refresh_if_stale()
    return jsonify(
        {"object": "list", "model": model.id, "data": [_endpoint(e, gateway.health) for e in model.endpoints]}
    )


@bp.get("/providers")
@require_key
def list_providers():
    """The catalog's providers, with their kind and how their endpoints fare (no secrets, no
    base URL: one may carry credentials)."""
    gateway = current_gateway()
    gateway.health.refresh_if_stale()
    data = []
    for name, config in gateway.catalog.providers.items():
        keys = [key for key, endpoint in gateway.catalog.endpoints.items() if endpoint.provider == name]
        states = [gateway.health.summary(key)["state"] for key in keys]
        data.append(
            {
                "id": name,
                "object": "provider",
                "kind": config.kind,
                "endpoints": len(keys),
                "health": {state: states.count(state) for state in ("closed", "half_open", "open")},
            }
        )
    return jsonify({"object": "list", "data": data})
