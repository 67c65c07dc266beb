"""Key management with a management key: /v1/keys."""

from flask import Blueprint, current_app, g, jsonify

from lunos.api.auth import require_management
from lunos.api.body import json_body
from lunos.extensions import db
from lunos.models import Account
from lunos.money import usd, usd_to_micros
from lunos.schemas import load
from lunos.schemas.keys import KeyCreate, KeyUpdate
from lunos.services import keys
from lunos.services.usage import key_spend_micros

bp = Blueprint("keys", __name__, url_prefix="/v1/keys")
_create, _update = KeyCreate(), KeyUpdate()


def _settings(data):
    """Schema fields to model columns: credit limits in micro-USD."""
    data = dict(data)
    if "credit_limit_usd" in data:
        limit = data.pop("credit_limit_usd")
        data["credit_limit_micros"] = usd_to_micros(limit, param="credit_limit_usd") if limit is not None else None
    return data


def describe(key):
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "kind": key.kind,
        "prefix": key.prefix,
        "created_at": keys.as_utc(key.created_at).isoformat(),
        "expires_at": keys.as_utc(key.expires_at).isoformat() if key.expires_at else None,
        "revoked": key.revoked_at is not None,
        "disabled": key.disabled,
        "requests_per_minute": key.requests_per_minute,
        "allowed_models": key.allowed_models,
        "allowed_apps": key.allowed_apps,
        "credit_limit_usd": usd(key.credit_limit_micros) if key.credit_limit_micros is not None else None,
        "credit_limit_reset": key.credit_limit_reset,
        "limit_window_spent_usd": usd(key.spent_micros),
        "usage_usd": usd(key_spend_micros(key.id)),
    }


management = require_management("Key management")  # an inference key gets 403


@bp.post("")
@management
def create():
    data = _settings(load(_create, json_body()))
    account = db.session.get(Account, g.caller.account_id)
    key, secret = keys.create_key(
        account, current_app.config["SECRET_KEY"], name=data.pop("name", "default"), kind=data.pop("kind"), **data
    )
    response = jsonify({**describe(key), "key": secret})  # the only time the secret is shown
    response.status_code = 201
    return response


@bp.get("")
@management
def list_keys():
    return jsonify({"object": "list", "data": [describe(k) for k in keys.list_keys(g.caller.account_id)]})


@bp.get("/<int:key_id>")
@management
def get_key(key_id):
    return jsonify(describe(keys.get_key(g.caller.account_id, key_id)))


@bp.patch("/<int:key_id>")
@management
def update_key(key_id):
    key = keys.get_key(g.caller.account_id, key_id)
    return jsonify(describe(keys.update_key(key, _settings(load(_update, json_body())))))


@bp.delete("/<int:key_id>")
@management
def revoke_key(key_id):
    return jsonify(describe(keys.revoke_key(keys.get_key(g.caller.account_id, key_id))))
