"""API key authentication for the /v1 routes."""
import functools

from flask import current_app, g, request

from lunos.services.keys import authenticate

DEFAULT_APP_ID = "unknown"


def presented_key():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-API-Key", "").strip() or None


def require_key(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.api_key = authenticate(presented_key(), current_app.config["SECRET_KEY"])
        g.app_id = request.headers.get("X-App-ID") or DEFAULT_APP_ID
        return view(*args, **kwargs)
    return wrapper
