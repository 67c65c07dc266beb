"""marshmallow schemas for request bodies, the one way their errors become a 400, and the
checks every hand-parsed input shares (ids, text that is stored)."""

import re

from marshmallow import ValidationError, fields

from lunos.errors import InvalidRequest

# An X-App-ID value: 1 to 64 letters, digits, '.', '_' or '-'.
APP_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Row ids are 32-bit integer columns: an id beyond this names no row (and PostgreSQL refuses to
# compare the column with it).
MAX_ROW_ID = 2**31 - 1
# A key id in a query string: ASCII digits (str.isdigit() also takes '²', which int() does not).
ROW_ID = re.compile(r"[0-9]{1,10}")


def is_row_id(value: int) -> bool:
    return 1 <= value <= MAX_ROW_ID


def no_nul(value: str) -> None:
    """A marshmallow validator: PostgreSQL's text cannot hold NUL."""
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")


class StrictBoolean(fields.Field):
    """true or false, and nothing else: marshmallow's Boolean also takes "yes", "off", 0 and 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        raise ValidationError("must be true or false")


def text(value, param: str, *, max_length: int, required: bool = True) -> str | None:
    """``value`` as text to store: a string of 1 to ``max_length`` characters once stripped,
    without NUL; None when absent and not ``required``. Anything else is a 400 naming ``param``."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= max_length or "\x00" in value:
        raise InvalidRequest(f"'{param}' must be a string of 1 to {max_length} characters (no NUL)", param=param)
    return value.strip()


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
        raise InvalidRequest(f"Invalid value for '{param}': {message}" if param else message, param=param) from None
