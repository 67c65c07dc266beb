"""Chat completions: pick the candidate models, call them through the router, shape the answer."""
import time

from lunos.errors import LunosError, ModelNotFound, UpstreamFailed
from lunos.providers.base import ProviderError
from lunos.services.streaming import (KEEPALIVE, SSE_DONE, SSE_KEEPALIVE, sse_event,
                                      with_keepalive)
from lunos.tokens import estimate_prompt, estimate_text

LUNOS_PARAMS = ("fallback_model", "models")


def candidates(catalog, body):
    """The models to try, in order: ``model`` (or the first of ``models``, or the catalog
    default), then ``fallback_model``, then ``models``. Unknown ids are a 400 naming the param."""
    listed = [(f"models[{i}]", name) for i, name in enumerate(body.get("models") or [])]
    if body.get("model"):
        named = [("model", body["model"])]
    elif listed:
        named = []
    else:
        named = [("model", catalog.default_model)]
    if body.get("fallback_model"):
        named.append(("fallback_model", body["fallback_model"]))
    chosen = []
    for param, name in named + listed:
        model = catalog.find(name)
        if model is None:
            raise ModelNotFound(f"The model '{name}' does not exist in this gateway's catalog.", param=param)
        if model not in chosen:
            chosen.append(model)
    return chosen


def upstream_body(body):
    return {key: value for key, value in body.items() if key not in LUNOS_PARAMS}


def estimated_usage(body, completion_text):
    prompt, completion = estimate_prompt(body), estimate_text(completion_text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def complete(gateway, body, completion_id):
    """A non-streaming completion: (chat.completion dict, Attempt list)."""
    attempts = []
    plan = gateway.router.plan(candidates(gateway.catalog, body))
    request = upstream_body(body)
    answer, model = gateway.router.run(plan, lambda provider, m: provider.complete(m, request), attempts)
    if not answer.get("usage"):
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in answer["choices"])
        answer["usage"] = estimated_usage(request, text)
    answer.update(id=completion_id, model=model.id, provider=model.provider)
    return answer, attempts


def _has_output(chunk):
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or any(delta.get(k) for k in (
                "content", "tool_calls", "refusal", "function_call", "reasoning", "reasoning_content")):
            return True
    return False


def _output_text(chunk):
    parts = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        parts.append(str(delta.get("content") or ""))
        for call in delta.get("tool_calls") or ():
            parts.append(str((call.get("function") or {}).get("arguments") or ""))
    return "".join(parts)


class ChatStream:
    """One streamed completion. Construction routes until an upstream accepts the request, so a
    total failure is still an ordinary HTTP error; ``events`` then yields SSE bytes.

    Chunks are held back until the first one with output: until then a broken upstream can be
    replaced by the next attempt without the client seeing two models. After output has reached
    the client there is no switch: a failure becomes an error event.
    """

    def __init__(self, gateway, body, completion_id):
        self.gateway = gateway
        self.request = upstream_body(body)
        self.completion_id = completion_id
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.attempts = []
        self.plan = gateway.router.plan(candidates(gateway.catalog, body))
        self.usage = None
        self.usage_estimated = False
        self.output_text = []
        self.status = "streaming"
        self._open()

    def _open(self):
        self.upstream, self.model = self.gateway.router.run(
            self.plan, lambda p, m: p.open_stream(m, self.request), self.attempts)
        self.opened_at = time.monotonic()

    def close(self):
        """Release the upstream connection; safe to call more than once, from any greenlet."""
        self.upstream.close()

    def _shape(self, chunk):
        chunk.update(id=self.completion_id, model=self.model.id, provider=self.model.provider)
        return chunk

    def _accept(self, chunk, held):
        """Note usage and output of one upstream chunk; queue what the client should see."""
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
            if not self.include_usage:
                if not chunk.get("choices"):
                    return
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        self.output_text.append(_output_text(chunk))
        held.append(sse_event(self._shape(chunk)))

    def events(self):
        held, sent_output = [], False
        try:
            while True:
                try:
                    for batch in with_keepalive(self.upstream, self.gateway.keepalive_s):
                        if batch is KEEPALIVE:
                            yield SSE_KEEPALIVE
                            continue
                        for chunk in batch:
                            self._accept(chunk, held)
                            sent_output = sent_output or _has_output(chunk)
                        if sent_output and held:
                            yield b"".join(held)
                            held = []
                    break
                except ProviderError as error:
                    self.upstream.close()
                    if sent_output:
                        raise
                    self.gateway.router.record_failure(self.plan, self.model, error, self.attempts,
                                                       self.opened_at)
                    held, self.output_text, self.usage = [], [], None
                    self._open()
            yield b"".join(held) + SSE_DONE
            self.status = "ok"
        except ProviderError as error:
            self.status = "upstream_error"
            yield sse_event(UpstreamFailed(
                f"The upstream failed mid-stream ({self.model.id}): {error.message}").body())
        except LunosError as error:
            self.status = "upstream_error"
            yield sse_event(error.body())
        except GeneratorExit:
            self.status = "client_disconnected"
            raise
        finally:
            self.close()
            if self.usage is None:
                self.usage = estimated_usage(self.request, "".join(self.output_text))
                self.usage_estimated = True
