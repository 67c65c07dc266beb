"""marshmallow schemas for request bodies, and the one way their errors become a 400."""
import re

from marshmallow import ValidationError

from lunos.errors import InvalidRequest

# An X-App-ID value: 1 to 64 letters, digits, '.', '_' or '-'.
APP_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _first_error(messages, path=""):
    """The first (param path, message) in marshmallow's nested error dict."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return _first_error(value, path)
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
        return _first_error(value, path + step)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path)
    return path or None, str(messages)


def load(schema, data):
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return schema.load(data)
    except ValidationError as exc:
        param, message = _first_error(exc.messages)
        raise InvalidRequest(f"Invalid value for '{param}': {message}" if param else message,
                             param=param) from None
