"""What every provider adapter implements, and the failures it reports to the router."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lunos.fields import MISSING, FieldError, require

if TYPE_CHECKING:
    import requests

    from lunos.catalog import Endpoint
    from lunos.providers.http import UpstreamHTTP

RETRYABLE_STATUSES = frozenset({408, 409, 429})

# What a catalog model does (its ``type``), and so which endpoint serves it.
CHAT = "chat"
EMBEDDING = "embedding"
MODEL_TYPES = (CHAT, EMBEDDING)

# What a stream yields, in place of a batch of chunks, after each quiet interval without a
# byte from its upstream: the gateway sends a keep-alive comment.
QUIET = type("Quiet", (), {"__repr__": lambda self: "QUIET"})()


class ProviderError(Exception):
    """One failed upstream attempt. The router decides whether to retry or move on.

    ``upstream`` is the upstream's own error, when it answered with one: its ``message``,
    ``type``, ``code`` and ``param``, which a client sees unchanged when every candidate
    rejected the request itself (a context overflow, say)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        timed_out: bool = False,
        retry_after: float | None = None,
        upstream: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.timed_out = timed_out
        self.retry_after = retry_after
        self.upstream = upstream or {}

    @classmethod
    def from_status(cls, status: int, upstream: dict, retry_after: float | None = None) -> ProviderError:
        retryable = status in RETRYABLE_STATUSES or status >= 500
        return cls(
            f"HTTP {status}: {upstream.get('message')}",
            status=status,
            retryable=retryable,
            retry_after=retry_after,
            upstream=upstream,
        )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ProviderConfig:
    """A ``[providers.NAME]`` table of the catalog, as its adapter read it."""

    name: str
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = 600.0
    headers: dict = field(default_factory=dict)
    # The header that carries the key (Azure OpenAI: "api-key"); Authorization sends "Bearer <key>".
    auth_header: str = "Authorization"
    query: dict = field(default_factory=dict)  # added to every call's URL (Azure: api-version)
    cooldown_s: float = 30.0  # how long an endpoint whose breaker opened is skipped


class Provider:
    """One configured upstream. Adapters translate the OpenAI request and answer both ways.

    ``complete`` returns a ``chat.completion`` dict. ``open_stream`` returns a ChunkStream once the
    upstream has accepted the request; failures before that raise ProviderError so the router
    can still retry or fall back. ``embed`` returns an embeddings ``list`` dict. ``configure``
    reads the adapter's settings from the catalog. ``model_types`` says what the adapter can
    serve: the catalog refuses a model of another type on it.
    """

    kind: str = ""
    needs_base_url = True  # an upstream over HTTP
    default_auth_header = "Authorization"
    # The optional request features (catalog.FEATURES) this kind honours, unless an endpoint
    # of the catalog says otherwise with its own ``supports``.
    supports: frozenset = frozenset({"tools", "response_format", "logprobs", "seed"})
    model_types: frozenset = frozenset({CHAT})

    def __init__(self, config: ProviderConfig, http: UpstreamHTTP):
        self.config = config
        self.http = http

    @classmethod
    def configure(cls, name: str, table: dict) -> ProviderConfig:
        """This adapter's settings from its catalog table; FieldError names what is wrong."""
        base_url = require(table, "base_url", str, default=MISSING if cls.needs_base_url else "")
        timeout = require(table, "timeout_s", float, default=600.0)
        if timeout <= 0:
            raise FieldError("'timeout_s' must be positive")
        headers = require(table, "headers", dict, default={})
        query = require(table, "query", dict, default={})
        cooldown = require(table, "cooldown_s", float, default=30.0)
        if cooldown < 0:
            raise FieldError("'cooldown_s' must not be negative")
        auth_header = require(table, "auth_header", str, default=cls.default_auth_header).strip()
        if not auth_header or any(c in auth_header for c in ":\r\n "):
            raise FieldError(f"'auth_header' must be a header name, got {auth_header!r}")
        return ProviderConfig(
            name=name,
            kind=cls.kind,
            base_url=base_url.rstrip("/"),
            api_key_env=require(table, "api_key_env", str, default=""),
            timeout_s=timeout,
            headers={str(k): str(v) for k, v in headers.items()},
            auth_header=auth_header,
            query={str(k): str(v) for k, v in query.items()},
            cooldown_s=cooldown,
        )

    @staticmethod
    def with_reasoning(body: dict, endpoint: Endpoint) -> dict:
        """The request with extended reasoning asked for (the ``:thinking`` variant); kinds
        without it leave the request as it is."""
        return body

    def complete(self, model: Endpoint, body: dict) -> dict:
        raise NotImplementedError

    def open_stream(self, model: Endpoint, body: dict) -> ChunkStream:
        raise NotImplementedError

    def embed(self, model: Endpoint, body: dict) -> dict:
        """The OpenAI embeddings answer (``data``, ``usage``) for an embeddings request."""
        raise NotImplementedError


class ChunkStream:
    """Iterates lists of chat.completion.chunk dicts from one upstream response, one list per
    read (several when they queued up), or QUIET. The greenlet that reads it also closes it."""

    def __init__(self, chunks: Iterable[Any], response: requests.Response | None = None):
        self._chunks = chunks
        self.response = response

    def __iter__(self):
        return iter(self._chunks)

    def close(self) -> None:
        """End the reading (its generator's finally closes the response) and close the response,
        which a stream closed before its first read needs. Safe to call more than once."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        if self.response is not None:
            self.response.close()
