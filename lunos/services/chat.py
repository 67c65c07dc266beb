"""Chat completions: pick the candidate models, admit and meter the request, call the models
through the router, shape the answer."""
import time

from lunos.errors import LunosError, ModelNotFound, UpstreamFailed
from lunos.providers.base import QUIET, ProviderError
from lunos.models.api_key import INFERENCE
from lunos.services.access import check_plan
from lunos.services.keys import check_key_scope, require_kind
from lunos.services.credits import usd
from lunos.services.metering import Meter
from lunos.services.usage import COMPLETION_PREFIX
from lunos.services.streaming import SSE_DONE, SSE_KEEPALIVE, sse_event
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


def estimated_usage(body, completion_text):
    prompt, completion = estimate_prompt(body), estimate_text(completion_text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def with_cost(usage, model):
    usage["cost"] = usd(model.cost_micros(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))
    return usage


class Completion:
    """One chat completion request: admitted, routed and metered. ``answer`` and ``ChatStream``
    run it; either way it ends in exactly one usage event."""

    def __init__(self, gateway, caller, body, request_id):
        self.gateway = gateway
        self.request = {key: value for key, value in body.items() if key not in LUNOS_PARAMS}
        self.completion_id = COMPLETION_PREFIX + request_id  # what /v1/generation?id= takes back
        self.models = candidates(gateway.catalog, body)
        self.meter = Meter(caller, request_id, self.models[0].id, bool(body.get("stream")))
        self.plan = gateway.router.plan(self.models)
        self.attempts = []
        try:
            require_kind(caller.key, INFERENCE)
            check_plan(caller.plan, self.models)
            check_key_scope(caller.key, self.models, caller.app_id)
            self.meter.admit(self.models, body)
        except LunosError as error:
            self.fail(error, status="refused")
            raise

    def fail(self, error, status="upstream_error", model=None, usage=None, estimated=False):
        self.meter.finish(status=status, http_status=error.status, model=model, usage=usage,
                          usage_estimated=estimated, attempts=self.attempts, error=error.message)

    def answer(self):
        """A non-streaming completion: the chat.completion dict."""
        try:
            answer, model = self.gateway.router.run(
                self.plan, lambda provider, m: provider.complete(m, self.request), self.attempts)
        except LunosError as error:
            self.fail(error)
            raise
        except BaseException:
            self.fail(LunosError("internal error"), status="error")
            raise
        estimated = not answer.get("usage")
        if estimated:
            text = "".join(str((c.get("message") or {}).get("content") or "") for c in answer["choices"])
            answer["usage"] = estimated_usage(self.request, text)
        with_cost(answer["usage"], model)
        answer.update(id=self.completion_id, model=model.id, provider=model.provider)
        self.meter.output_started()
        self.meter.finish(status="ok", model=model, usage=answer["usage"], usage_estimated=estimated,
                          attempts=self.attempts)
        return answer


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
    """A streamed completion. Construction routes until an upstream accepts the request, so a
    total failure is still an ordinary HTTP error; ``events`` then yields SSE bytes.

    Chunks are held back until the first one with output: until then a broken upstream can be
    replaced by the next attempt without the client seeing two models. After output has reached
    the client there is no switch: a failure becomes an error event. Whatever ends the stream
    (success, upstream failure, client disconnect) bills the tokens produced, once.
    """

    def __init__(self, completion):
        self.completion = completion
        self.gateway = completion.gateway
        self.include_usage = bool((completion.request.get("stream_options") or {}).get("include_usage"))
        self.usage = None
        self.output_text = []
        self.status = "streaming"
        try:
            self._open()
        except LunosError as error:
            completion.fail(error)
            raise

    def _open(self):
        c = self.completion
        self.upstream, self.model = self.gateway.router.run(
            c.plan, lambda p, m: p.open_stream(m, c.request), c.attempts)
        self.opened_at = time.monotonic()

    def close(self):
        """Release the upstream and settle; safe to call more than once."""
        self.upstream.close()
        if self.status == "streaming":
            self.status = "client_disconnected"
        self._settle()

    def _settle(self, error=None):
        # Without the upstream's count, estimate what was produced; nothing produced, nothing billed.
        text = "".join(self.output_text)
        estimated = self.usage is None and bool(text)
        usage = self.usage or (estimated_usage(self.completion.request, text) if text else None)
        self.completion.meter.finish(status=self.status, http_status=200, model=self.model, usage=usage,
                                     usage_estimated=estimated, attempts=self.completion.attempts, error=error)

    def _shape(self, chunk):
        chunk.update(id=self.completion.completion_id, model=self.model.id, provider=self.model.provider)
        return chunk

    def _accept(self, chunk, held):
        """Note usage and output of one upstream chunk; queue what the client should see."""
        usage = chunk.get("usage")
        if usage:
            self.usage = with_cost(usage, self.model)
            if not self.include_usage:
                if not chunk.get("choices"):
                    return
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        self.output_text.append(_output_text(chunk))
        held.append(sse_event(self._shape(chunk)))

    def events(self):
        held, sent_output, error_message = [], False, None
        try:
            while True:
                try:
                    for batch in self.upstream:
                        if batch is QUIET:
                            yield SSE_KEEPALIVE
                            continue
                        for chunk in batch:
                            self._accept(chunk, held)
                            sent_output = sent_output or _has_output(chunk)
                        if sent_output and held:
                            self.completion.meter.output_started()
                            yield b"".join(held)
                            held = []
                    break
                except ProviderError as error:
                    self.upstream.close()
                    if sent_output:
                        raise
                    self.gateway.router.record_failure(self.completion.plan, self.model, error,
                                                       self.completion.attempts, self.opened_at)
                    held, self.output_text, self.usage = [], [], None
                    self._open()
            self.status = "ok"
            yield b"".join(held) + SSE_DONE
        except ProviderError as error:
            self.status = "upstream_error"
            error_message = f"The upstream failed mid-stream ({self.model.id}): {error.message}"
            yield sse_event(UpstreamFailed(error_message).body())
        except LunosError as error:
            self.status = "upstream_error"
            error_message = error.message
            yield sse_event(error.body())
        except GeneratorExit:
            self.status = "client_disconnected"
            raise
        finally:
            self.upstream.close()
            # A stream that ended well is settled by close(), which the server calls once the
            # last byte has gone out: the client does not wait for the settlement's transaction.
            if self.status != "ok":
                self._settle(error_message)
