"""Any OpenAI-compatible Chat Completions server: OpenAI, vLLM, Ollama, llama.cpp, Groq..."""
import os

import orjson
import requests
import urllib3

from lunos.providers.base import CHAT, EMBEDDING, ChunkStream, Provider, ProviderError
from lunos.providers.http import chunk_batches, read_json


def parse_event(data):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProviderError(f"upstream sent an invalid event: {data[:200]!r}", retryable=True) from None


def read_api_key(config):
    """The provider key from its environment variable; None when the provider needs none."""
    if not config.api_key_env:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ProviderError(f"provider {config.name!r} is not configured: {config.api_key_env} is not set")
    return key


def read_stream(response, chunks):
    """Run ``chunks`` over a streamed response: transport failures become ProviderError, and
    the response is closed by whoever reads it, when reading ends."""
    try:
        yield from chunks
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        timed_out = isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
        raise ProviderError(f"stream broke: {exc.__class__.__name__}", retryable=True,
                            timed_out=timed_out) from None
    finally:
        response.close()


def read_large_json(response):
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

    def _headers(self):
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = read_api_key(self.config)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body, stream):
        return self.http.post_json(f"{self.config.base_url}/chat/completions", body,
                                   headers=self._headers(), timeout_s=self.config.timeout_s,
                                   stream=stream)

    def complete(self, model, body):
        response = self._post({**body, "model": model.upstream_model, "stream": False}, stream=False)
        answer = read_json(response)
        if not isinstance(answer, dict) or "choices" not in answer:
            raise ProviderError(f"upstream answered without choices: {str(answer)[:200]}", retryable=True)
        return answer

    def embed(self, model, body):
        response = self.http.post_json(f"{self.config.base_url}/embeddings", {**body, "model": model.upstream_model},
                                       headers=self._headers(), timeout_s=self.config.timeout_s)
        answer = read_large_json(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise ProviderError(f"upstream answered without data: {str(answer)[:200]}", retryable=True)
        return answer

    def open_stream(self, model, body):
        stream_options = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream = {**body, "model": model.upstream_model, "stream": True,
                    "stream_options": stream_options}
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
