"""The JSON body of a request, within the configured bounds, or an OpenAI-shaped 400 (413 when
it is over ``LUNOS_MAX_BODY_BYTES``, 415 when it comes compressed)."""

from typing import Any

from flask import current_app, request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from lunos.errors import InvalidRequest
from lunos.schemas import bounded_json


def json_body() -> Any:
    """Any JSON value; what is malformed, nested too deep or holds an integer beyond 64 bits is a
    400 (see ``schemas.bounded_json``)."""
    return bounded_json.loads(_raw_body(), max_depth=current_app.config["MAX_JSON_DEPTH"])


def json_object() -> dict:
    """A JSON object body (for endpoints without a schema of their own)."""
    body = json_body()
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _raw_body() -> bytes:
    encoding = request.environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ("", "identity"):  # a compressed body would be read as broken JSON
        raise UnsupportedMediaType(f"Content-Encoding '{encoding}' is not accepted: send the body uncompressed.")
    try:
        data = request.get_data(cache=True)
    except (OSError, ParseException):  # gunicorn's reader: broken chunked framing, a body cut short
        raise InvalidRequest("The request body could not be read: its framing is broken.") from None
    if request.content_length is not None and len(data) < request.content_length:
        raise InvalidRequest(
            f"The request body ended after {len(data)} of the {request.content_length} bytes "
            "its Content-Length announced."
        )
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        # A chunked body: werkzeug stops reading at the limit without a word, so a byte more
        # waiting behind it means the body was too large (and not merely cut short).
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return data
