"""JSON text to Python values within bounds every later step can handle, in linear time.

orjson parses (it rejects NaN, infinities, invalid UTF-8 and nesting past 1024 levels); then
what the rest of Lunos needs and orjson does not check is checked: nesting of at most
``max_depth`` levels (the encoders recurse, and orjson encodes at most 254), and integers within
the signed 64-bit range (what upstreams and the database can take; orjson encodes none beyond).
Each violation is an InvalidRequest naming its param (``metadata.deep[1]``).

A lone UTF-16 surrogate escape (``"\\ud83d"``: what a JavaScript string cut in the middle of an
emoji serialises to) is read as U+FFFD, the replacement character, and sent on as such; raw
bytes that are not UTF-8 are refused.
"""

import json
import re
from typing import Any

import orjson

from lunos.errors import InvalidRequest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# orjson reads an integer beyond 64 bits as a float: a body with a run of 19 or more digits may
# hold one (or a long float or string), and is read again exactly to find out.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# An escaped backslash (kept, so that "\\ud800" stays text), a surrogate pair (kept), or a lone
# surrogate (replaced), left to right.
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)
_REPLACEMENT = rb"\ufffd"
_MAX_PARAM_CHARS = 200


def loads(data: bytes, *, max_depth: int) -> Any:
    """The JSON value in ``data``; InvalidRequest naming the param for what is out of bounds."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        data, value = _with_lone_surrogates_replaced(data, exc, max_depth)
    # Fewer brackets cannot nest deeper; the level-by-level walk is the cheap test, the path of
    # the violation is looked for only when there is one.
    if data.count(b"[") + data.count(b"{") > max_depth and _nests_deeper(value, max_depth):
        _check(value, max_depth)
    if _LONG_DIGITS.search(data):
        _check(json.loads(data), max_depth)  # exact integers: orjson's floats hide them
    return value


def _nests_deeper(value: Any, max_depth: int) -> bool:
    level = [value] if type(value) in (dict, list) else []
    for _ in range(max_depth):
        nested = []
        for container in level:
            nested += [
                item
                for item in (container.values() if type(container) is dict else container)
                if type(item) is dict or type(item) is list
            ]
        if not nested:
            return False
        level = nested
    return True


def _with_lone_surrogates_replaced(data: bytes, error: orjson.JSONDecodeError, max_depth: int) -> tuple[bytes, Any]:
    repaired = _ESCAPES.sub(lambda m: _REPLACEMENT if len(m[0]) == 6 else m[0], data) if b"\\u" in data else data
    if repaired != data:
        try:
            return repaired, orjson.loads(repaired)
        except orjson.JSONDecodeError as exc:
            error = exc
    if error.msg.startswith("depth limit"):  # deeper than orjson goes, so deeper than max_depth
        top = _top_level_key(repaired[: error.pos])
        raise _too_deep(max_depth, [top] if top is not None else [])
    if "UTF-8" in error.msg:  # orjson says "surrogates not allowed" of any byte that is not UTF-8
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                f"The request body is not valid UTF-8 (at byte {exc.start}): send JSON text encoded as UTF-8."
            ) from None
    raise InvalidRequest(
        f"We could not parse the JSON body of your request ({error.msg}): send a JSON "
        f"object with Content-Type: application/json."
    ) from None


def _check(value: Any, max_depth: int) -> None:
    found = _first_violation(value, 1, max_depth) if type(value) in (dict, list) else None
    if found is None:
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRequest("The JSON body is an integer beyond the signed 64-bit range.")
        return
    steps, problem = found
    steps.reverse()
    if problem == "depth":
        raise _too_deep(max_depth, steps[:1])
    param = _param(steps)
    raise InvalidRequest(
        f"Invalid value for '{param}': integers must be within the signed 64-bit range ({INT64_MIN} to {INT64_MAX}).",
        param=param,
    )


def _too_deep(max_depth: int, steps: list) -> InvalidRequest:
    param = _param(steps) or None
    where = f" (in '{param}')" if param else ""
    return InvalidRequest(f"The JSON body is nested more than {max_depth} levels deep{where}.", param=param)


# The tokens that matter to nesting: strings (a key when a colon follows), and brackets.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"\s*(:?)|[\[\]{}]')


def _top_level_key(head: bytes) -> str | None:
    """The key of the top-level member that ``head`` (a body cut where it became too deep) ends
    inside; None when the body is not an object."""
    if not head.lstrip().startswith(b"{"):
        return None
    depth, key = 0, None
    for token in _TOKENS.finditer(head):
        text = token[0]
        if text in (b"[", b"{"):
            depth += 1
        elif text in (b"]", b"}"):
            depth -= 1
        elif depth == 1 and token[1]:
            try:
                key = orjson.loads(text[: text.rindex(b'"') + 1])
            except orjson.JSONDecodeError:
                key = None
    return key


def _first_violation(container, depth: int, max_depth: int):
    """([steps from the violation up to the top], 'depth' | 'integer') or None. Recursion is
    bounded by ``max_depth``; only containers recurse, so the walk is linear in the body."""
    items = container.items() if type(container) is dict else enumerate(container)
    for key, item in items:
        kind = type(item)
        if kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return [key], "integer"
        elif kind is dict or kind is list:
            if depth >= max_depth:
                return [key], "depth"
            if item:
                found = _first_violation(item, depth + 1, max_depth)
                if found is not None:
                    found[0].append(key)
                    return found
    return None


def _param(steps) -> str:
    """Steps as a param path, the way schema errors name them: ``messages[0].content``."""
    path = ""
    for step in steps:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else str(step))
    return path if len(path) <= _MAX_PARAM_CHARS else path[:_MAX_PARAM_CHARS] + "..."
