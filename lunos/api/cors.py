"""CORS for browser clients of the API: ``/v1/*`` but Stripe's webhooks; never the dashboard or
the admin API, whose callers are not scripts of other origins.

Keys travel in headers (never cookies), so no credentials mode is involved and ``*`` is safe to
answer. A preflight is answered before authentication (browsers send no key with it), and the
headers also go on error answers, or a browser would hide a 401 or a 429 from the script.
"""

from flask import Flask, Response, request

ANY_ORIGIN = "*"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
# What the SDKs send besides the CORS-safelisted headers; x-stainless-* is a growing family
# (lang, os, arch, runtime, retry-count, timeout...), so it is matched by prefix.
ALLOWED_HEADERS = (
    "authorization",
    "x-api-key",
    "x-app-id",
    "content-type",
    "openai-organization",
    "openai-project",
    "openai-beta",
)
ALLOWED_HEADER_PREFIX = "x-stainless-"
EXPOSED_HEADERS = ", ".join(
    (
        "x-request-id",
        "retry-after",
        "x-should-retry",
        *(f"x-ratelimit-{what}-{kind}" for kind in ("requests", "tokens") for what in ("limit", "remaining", "reset")),
    )
)
PREFLIGHT_MAX_AGE_S = "600"  # browsers cap it anyway (Chromium at 2 h); short so a changed list shows soon


def applies(path: str) -> bool:
    return (path == "/v1" or path.startswith("/v1/")) and not path.startswith("/v1/billing/webhooks")


def allowed_headers(requested: str) -> str:
    """The requested headers a preflight may allow: the known ones and x-stainless-*."""
    names = [name.strip().lower() for name in requested.split(",") if name.strip()]
    extra = [name for name in names if name.startswith(ALLOWED_HEADER_PREFIX) and name not in ALLOWED_HEADERS]
    return ", ".join((*ALLOWED_HEADERS, *extra))


def init_app(app: Flask) -> None:
    origins = tuple(app.config["CORS_ORIGINS"])
    if not origins:  # LUNOS_CORS_ORIGINS=none
        return
    any_origin = origins == (ANY_ORIGIN,)

    def allowed_origin() -> str | None:
        """What Access-Control-Allow-Origin says to this request's origin; None: nothing."""
        if any_origin:
            return ANY_ORIGIN
        origin = request.headers.get("Origin")
        return origin if origin and origin.lower() in origins else None

    @app.before_request
    def _answer_preflight():
        if (
            request.method != "OPTIONS"
            or "Access-Control-Request-Method" not in request.headers
            or not applies(request.path)
            or allowed_origin() is None
        ):
            return None  # not a preflight we allow: Flask answers OPTIONS as it would
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = allowed_headers(
            request.headers.get("Access-Control-Request-Headers", "")
        )
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
        response.vary.add("Access-Control-Request-Headers")
        return response

    @app.after_request
    def _allow_origin(response):
        if not applies(request.path):
            return response
        if not any_origin:
            response.vary.add("Origin")  # the answer differs per origin: caches must know
        origin = allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
