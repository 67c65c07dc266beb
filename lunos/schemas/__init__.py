"""marshmallow schemas for request bodies, and the one way their errors become a 400."""
from marshmallow import ValidationError

from lunos.errors import InvalidRequest


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
