"""Any OpenAI-compatible Chat Completions server: OpenAI, vLLM, Ollama, llama.cpp, Groq..."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import orjson
import requests
import urllib3

from lunos.providers.base import CHAT, EMBEDDING, ChunkStream, Provider, ProviderConfig, ProviderError
from lunos.providers.http import UpstreamHTTP, chunk_batches, read_json

if TYPE_CHECKING:
    from lunos.catalog import Endpoint

T = TypeVar("T")


def parse_event(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(f"upstream sent an invalid event: {data[:200]!r}", retryable=True) from None


def read_api_key(config: ProviderConfig) -> str | None:
    """The provider key from its environment variable; None when the provider needs none."""
    if not config.api_key_env:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ProviderError(f"provider {config.name!r} is not configured: {config.api_key_env} is not set")
    return key


def read_stream(response: requests.Response, chunks: Iterable[T]) -> Iterator[T]:
    """Run ``chunks`` over a streamed response: transport failures become ProviderError, and
    the response is closed by whoever reads it, when reading ends."""
    try:
        yield from chunks
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        timed_out = isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
        raise ProviderError(f"stream broke: {exc.__class__.__name__}", retryable=True, timed_out=timed_out) from None
    finally:
        response.close()


def auth_headers(config: ProviderConfig, key: str | None) -> dict[str, str]:
    """The key in the provider's ``auth_header``: ``Authorization: Bearer <key>`` by default,
    the bare key in any other header (Azure OpenAI's ``api-key``)."""
    if not key:
        return {}
    if config.auth_header.lower() == "authorization":
        return {"Authorization": f"Bearer {key}"}
    return {config.auth_header: key}


def url(config: ProviderConfig, path: str) -> str:
    """``base_url`` + ``path``, with the provider's ``query`` parameters."""
    return f"{config.base_url}{path}" + (f"?{urlencode(config.query)}" if config.query else "")


def read_large_json(response: requests.Response) -> Any:
    """``read_json`` through orjson: an answer of float embeddings runs to megabytes, which the
    standard library parses several times slower, holding the worker's loop meanwhile."""
    try:
        return orjson.loads(response.content)
    except requests.Timeout:
        raise ProviderError("timed out reading the answer", retryable=True, timed_out=True) from None
    except (requests.RequestException, OSError) as exc:
        raise ProviderError(f"answer broke off: {exc.__class__.__name__}", retryable=True) from None
    except orjson.JSONDecodeError:
        raise ProviderError("upstream answered with invalid JSON", retryable=True) from None
    finally:
        response.close()


class OpenAIProvider(Provider):
    kind = "openai"
    model_types = frozenset({CHAT, EMBEDDING})

    def __init__(self, config: ProviderConfig, http: UpstreamHTTP):
        super().__init__(config, http)
        self._completions_url = url(config, "/chat/completions")
        self._embeddings_url = url(config, "/embeddings")

    def _headers(self):
        return {
            "Content-Type": "application/json",
            **self.config.headers,
            **auth_headers(self.config, read_api_key(self.config)),
        }

    def _post(self, body, stream):
        return self.http.post_json(
            self._completions_url, body, headers=self._headers(), timeout_s=self.config.timeout_s, stream=stream
        )

    @staticmethod
    def with_reasoning(body: dict, endpoint: Endpoint) -> dict:
        """The request with extended reasoning asked for (the ``:thinking`` variant)."""
        return {**body, "reasoning_effort": "high"}

    def complete(self, model: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = self._post({**body, "model": model.upstream_model, "stream": False}, stream=False)
        answer = read_json(response)
        if not isinstance(answer, dict) or "choices" not in answer:
            raise ProviderError(f"upstream answered without choices: {str(answer)[:200]}", retryable=True)
        return answer

    def embed(self, model: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post_json(
            self._embeddings_url,
            {**body, "model": model.upstream_model},
            headers=self._headers(),
            timeout_s=self.config.timeout_s,
        )
        answer = read_large_json(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise ProviderError(f"upstream answered without data: {str(answer)[:200]}", retryable=True)
        return answer

    def open_stream(self, model: Endpoint, body: dict[str, Any]) -> ChunkStream:
        stream_options = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream = {**body, "model": model.upstream_model, "stream": True, "stream_options": stream_options}
        response = self._post(upstream, stream=True)
        return ChunkStream(read_stream(response, self._chunks(response)), response)

    def _chunks(self, response):
        finished = done = False

        def convert(_event, data):
            nonlocal finished, done
            if done:
                return ()  # read to the end so the connection goes back to the pool
            if data.strip() == b"[DONE]":
                finished = done = True
                return ()
            chunk = parse_event(data)
            if isinstance(chunk, dict) and "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise ProviderError(f"upstream error mid-stream: {message}", retryable=True)
            finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
            return (chunk,)

        yield from chunk_batches(response, self.http.quiet_s, self.config.timeout_s, convert)
        if not finished:  # a server that omits [DONE] still sends a finish_reason
            raise ProviderError("stream ended before the answer finished", retryable=True)
