"""A local, deterministic model: answers with the last user message, streams it word by word."""
import re
import time
import uuid

from lunos.providers.base import ChunkStream, Provider
from lunos.tokens import estimate_prompt, estimate_text, message_text


def _answer(body):
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _usage(body, text):
    prompt, completion = estimate_prompt(body), estimate_text(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class EchoProvider(Provider):
    kind = "echo"
    needs_base_url = False
    supports = frozenset()

    def complete(self, model, body):
        text = _answer(body)
        choices = [{"index": i, "message": {"role": "assistant", "content": text},
                    "logprobs": None, "finish_reason": "stop"} for i in range(body.get("n") or 1)]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": model.upstream_model, "choices": choices,
                "usage": _usage(body, text)}

    def open_stream(self, model, body):
        return ChunkStream([chunk] for chunk in self._chunks(model, body))

    @staticmethod
    def _chunks(model, body):
        text = _answer(body)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model.upstream_model}

        def chunk(delta, finish_reason=None):
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish_reason}]}

        yield chunk({"role": "assistant", "content": ""})
        for word in re.findall(r"\s*\S+\s*", text):
            yield chunk({"content": word})
        yield chunk({}, "stop")
        yield {**base, "choices": [], "usage": _usage(body, text)}
