"""The caller's money: balance, credits, one generation's stats, the calling key."""

from flask import Blueprint, current_app, g, jsonify, request

from lunos.api.auth import own_key_only, require_key
from lunos.errors import InvalidRequest, NotFound
from lunos.money import usd
from lunos.services import accounts, usage

MAX_GENERATION_ID_CHARS = len(usage.COMPLETION_PREFIX) + 64  # an event id is at most 64 characters

bp = Blueprint("account", __name__, url_prefix="/v1")


@bp.get("/balance")
@require_key
def balance():
    summary = accounts.balance_summary(g.caller.account_id, current_app.config["LOW_BALANCE_USD"])
    return jsonify(
        {
            "balance": usd(summary["balance_micros"]),
            "reserved": usd(summary["reserved_micros"]),
            "available": usd(summary["available_micros"]),
            "low_balance": summary["low_balance"],
            "currency": "usd",
            **summary,
        }
    )


@bp.get("/credits")
@require_key
def credits():
    total_credits, total_usage = accounts.credit_totals(g.caller.account_id)
    return jsonify({"data": {"total_credits": usd(total_credits), "total_usage": usd(total_usage)}})


@bp.get("/generation")
@require_key
def generation():
    generation_id = request.args.get("id")
    if not generation_id:
        raise InvalidRequest("Missing required parameter: 'id' (the x-request-id of an answer).", param="id")
    if len(generation_id) > MAX_GENERATION_ID_CHARS or "\x00" in generation_id:
        raise NotFound(f"No generation with id {generation_id[:MAX_GENERATION_ID_CHARS]!r}.", param="id")
    return jsonify({"data": usage.generation(g.caller.account_id, generation_id, own_key_only())})


@bp.get("/key")
@require_key
def key():
    caller = g.caller
    return jsonify(
        {
            "data": {
                "id": g.key.id,
                "name": g.key.name,
                "prefix": g.key.prefix,
                "plan": caller.plan.name,
                "usage": usd(usage.key_spend_micros(g.key.id)),
                "limit": None,
                "rate_limit": {
                    "requests_per_minute": caller.quota.requests_per_minute,
                    "tokens_per_minute": caller.quota.tokens_per_minute,
                },
                "models": list(caller.plan.models),
            }
        }
    )
