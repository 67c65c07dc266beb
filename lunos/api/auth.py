"""API key authentication for the /v1 routes."""
import functools

from flask import current_app, g, request

from lunos.gateway import current_gateway
from lunos.services.access import resolve_caller
from lunos.services.keys import authenticate

DEFAULT_APP_ID = "unknown"


def presented_key():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def require_key(view):
    """Authenticate the key and resolve the caller (account, plan, quota, app) into ``g``."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.key = authenticate(presented_key(), current_app.config["SECRET_KEY"])
        g.caller = resolve_caller(g.key, request.headers.get("X-App-ID") or DEFAULT_APP_ID,
                                  current_gateway().plans, current_app.config["PAST_DUE_GRACE_DAYS"])
        return view(*args, **kwargs)
    return wrapper
