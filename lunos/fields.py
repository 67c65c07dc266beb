"""Typed fields of the TOML settings files (catalog, plans): one reading of a table's values."""

import tomllib


class FieldError(ValueError):
    """A value of a settings file that is missing or of the wrong type; the message names it."""


MISSING = object()


def require(table: dict, key: str, kind: type, default=MISSING):
    """``table[key]`` as ``kind`` (an int is accepted for a float; a bool is never a number),
    or ``default`` when absent; raises FieldError naming the key."""
    if key not in table:
        if default is MISSING:
            raise FieldError(f"missing '{key}'")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise FieldError(f"'{key}' must be {kind.__name__}, got {value!r}")
    return value


def read_toml(path, where: str, error: type[Exception]) -> dict:
    """The parsed file; a missing or malformed one raises ``error`` naming ``where``."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: invalid TOML: {exc}") from None
