"""JSON out, one way for answers and streams: orjson, with exact decimals (money) written as
plain numbers without an exponent (``0.000001``, never ``1e-06``)."""

import json
from decimal import Decimal
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value.normalize() if value else Decimal(0), "f"))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_default)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
    # An integer beyond 64 bits (orjson's limit): the standard library writes it.
    return json.dumps(value, default=_plain, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON answers through ``dumps``; reading JSON stays Flask's own."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps(obj).decode()

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(dumps(obj), mimetype=self.mimetype)
