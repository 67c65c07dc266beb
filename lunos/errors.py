"""The error tree and the one place that turns errors into OpenAI-shaped HTTP responses.

Domain code raises these; only ``register_error_handlers`` knows about HTTP. Every answer is
``{"error": {"message", "type", "param", "code"}}``::

    LunosError                        500 api_error (also: anything unexpected, never a traceback)
    +-- InvalidRequest                400 invalid_request_error
    |   +-- ModelNotFound             404 invalid_request_error, code model_not_found (as OpenAI)
    |   +-- UpstreamRejected          400/413/422 as every candidate's upstream said: its type, code, param
    +-- AuthenticationFailed          401 authentication_error, code invalid_api_key
    +-- InsufficientCredits           402 insufficient_credits, x-should-retry: false
    +-- PermissionDenied              403 permission_error
    |   +-- SubscriptionRequired          type subscription_required
    |   +-- InvalidSubscriptionPlan       type invalid_subscription_plan
    +-- NotFound                      404 not_found_error
    +-- RateLimited                   429 rate_limit_error, code rate_limit_exceeded (upstream_rate_limited
    |                                 when every upstream attempt was), Retry-After
    +-- UpstreamFailed                502 upstream_error (every candidate failed), x-should-retry: false
    |   +-- UpstreamTimedOut          504 timeout_error (every candidate timed out), x-should-retry: false
    +-- ServiceUnavailable            503 service_unavailable (database, Redis, billing not set up)

Outside the tree: werkzeug's HTTPExceptions (routing, 405, 413) keep their status and take the
shape; SQLAlchemy's errors of a database that is away (down, unreachable, locked) are a 503. A provider's failed
attempt is a ``providers.base.ProviderError``, which the router turns into one of the above.
"""

import logging

from flask import jsonify, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class LunosError(Exception):
    status = 500
    type = "api_error"
    code = None

    def __init__(self, message, *, param=None, code=None, headers=None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(LunosError):
    status = 400
    type = "invalid_request_error"


class ModelNotFound(InvalidRequest):
    """An unknown model: 404 with OpenAI's type and code, which the SDKs raise as NotFoundError."""

    status = 404
    code = "model_not_found"


class AuthenticationFailed(LunosError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientCredits(LunosError):
    status = 402
    type = "insufficient_credits"

    def __init__(self, message, **kw):
        super().__init__(message, **kw)
        self.headers.setdefault("x-should-retry", "false")


class PermissionDenied(LunosError):
    status = 403
    type = "permission_error"


class SubscriptionRequired(PermissionDenied):
    type = "subscription_required"


class InvalidSubscriptionPlan(PermissionDenied):
    type = "invalid_subscription_plan"


class NotFound(LunosError):
    status = 404
    type = "not_found_error"


class RateLimited(LunosError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamRejected(InvalidRequest):
    """Every candidate's upstream rejected the request itself: its status (400, 413, 422), type,
    code, param and message, as the upstream sent them. ``summary`` (every attempt) is for the
    usage event."""

    def __init__(self, message, *, status=400, type=None, summary=None, **kw):
        super().__init__(message, **kw)
        self.status = status
        if type:
            self.type = type
        self.summary = summary or message


class UpstreamFailed(LunosError):
    """Every candidate model failed."""

    status = 502
    type = "upstream_error"


class UpstreamTimedOut(UpstreamFailed):
    """Every candidate model timed out."""

    status = 504
    type = "timeout_error"


class ServiceUnavailable(LunosError):
    status = 503
    type = "service_unavailable"


DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."


# Werkzeug's own errors (routing, body size) keep their status; only the shape changes.
_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(err: LunosError):
    response = jsonify(err.body())
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


def register_error_handlers(app):
    app.register_error_handler(LunosError, error_response)

    @app.errorhandler(HTTPException)
    def _http(exc):
        err = LunosError(exc.description or exc.name)
        err.status = exc.code or 500
        if err.status == 413 and request.max_content_length:
            err.message = (
                f"The request body is larger than {request.max_content_length} bytes, "
                "the most this gateway accepts (LUNOS_MAX_BODY_BYTES)."
            )
        err.type = _HTTP_TYPES.get(err.status, "invalid_request_error" if err.status < 500 else "api_error")
        response = error_response(err)
        if err.status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(DBAPIError)
    def _database_error(exc):
        from lunos.services.prepared import database_unavailable

        if not database_unavailable(exc):
            return _unexpected(exc)
        log.error("database unavailable: %s", exc)
        return error_response(ServiceUnavailable(DATABASE_UNAVAILABLE))

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        return error_response(LunosError("The server had an error while processing your request."))
