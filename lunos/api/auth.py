"""API key authentication for the /v1 routes."""
import functools

from flask import current_app, g, request

from lunos.errors import InvalidRequest
from lunos.gateway import current_gateway
from lunos.schemas import APP_ID
from lunos.services.access import resolve_caller
from lunos.services.keys import authenticate

DEFAULT_APP_ID = "unknown"


def app_id():
    """The X-App-ID header: 1 to 64 letters, digits, '.', '_' or '-'; absent means 'unknown'."""
    value = request.headers.get("X-App-ID")
    if value is None:
        return DEFAULT_APP_ID
    if not APP_ID.fullmatch(value):
        raise InvalidRequest("X-App-ID must be 1 to 64 characters of letters, digits, '.', '_' or '-'.",
                             param="X-App-ID")
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
        g.caller = resolve_caller(g.key, app_id(),
                                  current_gateway().plans, current_app.config["PAST_DUE_GRACE_DAYS"])
        return view(*args, **kwargs)
    return wrapper
