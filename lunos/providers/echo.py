"""A local, deterministic model: answers with the last user message, streams it word by word;
and embeds: the same input always gives the same unit vector (a hash of it, not its meaning)."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any

from lunos.providers.base import CHAT, EMBEDDING, ChunkStream, Provider, ProviderError
from lunos.schemas.embeddings import input_items
from lunos.tokens import estimate_prompt, estimate_text, message_text

if TYPE_CHECKING:
    from lunos.catalog import Endpoint

ECHO_DIMENSIONS = 256  # when the request names none
ECHO_MAX_DIMENSIONS = 1024  # bounds the work of one request (at most 2048 inputs)


def _answer(body):
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _usage(body, text):
    prompt, completion = estimate_prompt(body), estimate_text(text) * (body.get("n") or 1)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _asked_output(body):
    """The most output tokens the request asks for (0: it names no limit)."""
    return max(body.get("max_completion_tokens") or 0, body.get("max_tokens") or 0)


def _check_context(model, body):
    """A prompt that, with the output asked for, is over the model's context is refused, as
    OpenAI refuses it (and then bills nothing)."""
    prompt, asked = estimate_prompt(body), _asked_output(body)
    if prompt + asked > model.context_length:
        output = f" ({prompt} in the messages, {asked} in the completion)" if asked else " in the messages"
        raise ProviderError.from_status(
            400,
            {
                "message": f"This model's maximum context length is {model.context_length} tokens. "
                f"However, you requested {prompt + asked} tokens{output}. Please reduce the length of the "
                "messages or completion.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            },
        )


def _within_limit(model, body, text):
    """The echo cut to the output limit (the request's, within the endpoint's), as an upstream
    would: (text, finish_reason)."""
    asked = _asked_output(body)
    limit = min(asked or model.max_output_tokens, model.max_output_tokens)
    if estimate_text(text) <= limit:
        return text, "stop"
    words = re.findall(r"\s*\S+\s*", text)
    kept, used = [], 0
    for word in words:
        used += estimate_text(word)
        if used > limit:
            break
        kept.append(word)
    return "".join(kept), "length"


def _vector(item, dimensions):
    """A unit vector of float32 values from a hash of the input, so both encodings agree."""
    seed = f"text:{item}" if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
    digest = hashlib.shake_256(seed.encode("utf-8", "surrogatepass")).digest(4 * dimensions)
    values = struct.unpack(f"<{dimensions}i", digest)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values)))


def _encoded(vector, encoding_format):
    if encoding_format == "base64":  # OpenAI's: little-endian float32, what the SDKs ask for by default
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


class EchoProvider(Provider):
    kind = "echo"
    needs_base_url = False
    supports = frozenset()
    model_types = frozenset({CHAT, EMBEDDING})

    def embed(self, model: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        dimensions = body.get("dimensions") or ECHO_DIMENSIONS
        if dimensions > ECHO_MAX_DIMENSIONS:
            raise ProviderError.from_status(
                400,
                {
                    "message": f"the echo model embeds in at most {ECHO_MAX_DIMENSIONS} dimensions, not {dimensions}",
                    "param": "dimensions",
                },
            )
        items = input_items(body["input"])
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encoded(_vector(item, dimensions), body.get("encoding_format")),
            }
            for index, item in enumerate(items)
        ]
        tokens = sum(estimate_text(item) if isinstance(item, str) else len(item) for item in items)
        return {
            "object": "list",
            "data": data,
            "model": model.upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def complete(self, model: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        _check_context(model, body)
        text, finish_reason = _within_limit(model, body, _answer(body))
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for i in range(body.get("n") or 1)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.upstream_model,
            "choices": choices,
            "usage": _usage(body, text),
        }

    def open_stream(self, model: Endpoint, body: dict[str, Any]) -> ChunkStream:
        _check_context(model, body)
        return ChunkStream([chunk] for chunk in self._chunks(model, body))

    @staticmethod
    def _chunks(model, body):
        text, finish_reason = _within_limit(model, body, _answer(body))
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model.upstream_model,
        }

        choices = range(body.get("n") or 1)

        def chunk(index, delta, finish_reason=None):
            return {
                **base,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }

        # Each of the n choices in turn, word by word, as OpenAI interleaves them.
        yield from (chunk(i, {"role": "assistant", "content": ""}) for i in choices)
        for word in re.findall(r"\s*\S+\s*", text):
            yield from (chunk(i, {"content": word}) for i in choices)
        yield from (chunk(i, {}, finish_reason) for i in choices)
        yield {**base, "choices": [], "usage": _usage(body, text)}
