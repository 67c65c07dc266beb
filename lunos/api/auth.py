"""API key authentication for the /v1 routes, and what each kind of key may reach.

The rule is in lunos/services/keys.py (``require_management``, ``confined_key_id``); routes say
which side of it they are on with ``require_key``, ``require_management`` or ``own_key_only``."""

import functools

from flask import current_app, g, request

from lunos.errors import InvalidRequest
from lunos.gateway import current_gateway
from lunos.schemas import APP_ID
from lunos.services import keys
from lunos.services.access import resolve_caller
from lunos.services.keys import authenticate

DEFAULT_APP_ID = "unknown"


def app_id():
    """The X-App-ID header: 1 to 64 letters, digits, '.', '_' or '-'; absent means 'unknown'."""
    value = request.headers.get("X-App-ID")
    if value is None:
        return DEFAULT_APP_ID
    if not APP_ID.fullmatch(value):
        raise InvalidRequest(
            "X-App-ID must be 1 to 64 characters of letters, digits, '.', '_' or '-'.", param="X-App-ID"
        )
    return value


def presented_key() -> str | None:
    """``X-API-Key`` when present (SDKs require some bearer token, so clients that send the key
    this way often send a placeholder as the bearer), else ``Authorization: Bearer``."""
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key:
        return api_key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_key(view):
    """Authenticate the key and resolve the caller (account, plan, quota, app) into ``g``."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.key = authenticate(presented_key(), current_app.config["SECRET_KEY"])
        g.caller = resolve_caller(g.key, app_id(), current_gateway().plans, current_app.config["PAST_DUE_GRACE_DAYS"])
        return view(*args, **kwargs)

    return wrapper


def require_management(what: str):
    """Decorator: the route is for management keys; an inference key gets 403 ``permission_error``
    whose message starts with ``what`` ("Billing", "Apps", ...)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            keys.require_management(g.key, what)
            return view(*args, **kwargs)

        return require_key(wrapper)

    return decorate


def own_key_only() -> int | None:
    """Inside a route: the key id reads are confined to (an inference key's own), or None for a
    management key, which reads the whole account."""
    return keys.confined_key_id(g.key)
