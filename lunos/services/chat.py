"""Chat completions: what is chat's own (messages, choices, SSE) on top of the metered-request
seam (services/metered.py), which admits, routes and settles."""

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lunos.background import background
from lunos.catalog import Endpoint
from lunos.errors import InsufficientCredits, LunosError, UpstreamFailed
from lunos.models.api_key import INFERENCE
from lunos.money import micros_to_decimal
from lunos.pricing import TokenUsage
from lunos.providers.base import QUIET, Provider, ProviderError
from lunos.routing.candidates import ROUTING_PARAMS, candidates
from lunos.routing.preferences import Preferences, features_used, resolve
from lunos.services import leases
from lunos.services.access import check_plan
from lunos.services.keys import require_kind
from lunos.services.metered import INTERNAL_ERROR, MeteredRequest
from lunos.services.metering import CLIENT_DISCONNECTED, ERROR, INTERRUPTED, OK, UPSTREAM_ERROR
from lunos.services.streaming import SSE_DONE, SSE_KEEPALIVE, sse_event
from lunos.services.usage import COMPLETION_PREFIX
from lunos.tokens import estimate_prompt, estimate_text, prompt_upper_estimate

if TYPE_CHECKING:
    from lunos.gateway import Gateway
    from lunos.services.access import Caller

log = logging.getLogger(__name__)
STREAMING = "streaming"  # a stream's status until it ends


def output_limit(body: dict) -> int | None:
    # Both limits sent: an upstream may honour either, so reserve for the larger.
    return max(body.get("max_completion_tokens") or 0, body.get("max_tokens") or 0) or None


def worst_case_micros(endpoints: list, body: dict) -> int:
    """The most any endpoint that may be tried could cost: a generous prompt estimate, in the
    dearest bucket and tier, plus the most output allowed."""
    prompt, asked, choices = prompt_upper_estimate(body), output_limit(body), body.get("n") or 1
    return max(
        e.prices.most_micros(prompt, min(asked or e.max_output_tokens, e.max_output_tokens) * choices)
        for e in endpoints
    )


def estimated_usage(body: dict, completion_text: str) -> dict:
    prompt, completion = estimate_prompt(body), estimate_text(completion_text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def with_cost(usage: dict, endpoint: Endpoint) -> dict:
    """``usage`` in OpenAI's shape with its buckets (cache reads and writes) and its ``cost`` in
    USD at the prices of ``endpoint``: an exact decimal, rendered without an exponent."""
    counted = TokenUsage.from_openai(usage)
    extra = {
        k: v
        for k, v in usage.items()
        if k
        not in (
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        )
    }
    return {**counted.as_openai(), **extra, "cost": micros_to_decimal(endpoint.cost_micros(counted))}


def refuse_early(gateway: "Gateway", caller: "Caller", body: dict) -> None:
    """What is cheap to check before a body is validated (a large one costs CPU to validate):
    the key's kind, the plan's API access, and an account that cannot pay anything (from the
    key's lookup). The admission checks each again, exactly; a refusal here writes no event."""
    require_kind(caller.key, INFERENCE)
    if not caller.plan.api_access:
        check_plan(caller.plan, [])
    if caller.key.available_micros + leases.free_micros(caller.account_id) > 0 or not isinstance(body, dict):
        return
    name = body.get("model") or gateway.catalog.default_model
    candidate = resolve(gateway.catalog, name) if isinstance(name, str) else None
    if candidate is not None and any(
        e.prices.input or e.prices.output or e.prices.request for e in candidate.model.endpoints
    ):
        raise InsufficientCredits("Insufficient credits: the account has no credits available. Add credits.")


class Completion:
    """One chat completion request, admitted when built. ``answer`` runs it unstreamed;
    ``ChatStream`` streamed."""

    def __init__(self, gateway, caller, body: dict, request_id: str):
        self.request = {key: value for key, value in body.items() if key not in ROUTING_PARAMS}
        self.completion_id = COMPLETION_PREFIX + request_id  # what /v1/generation?id= takes back
        named = candidates(gateway.catalog, body)
        preferences = Preferences.from_body(body.get("provider"), gateway.catalog.providers)
        self.metered = MeteredRequest(
            gateway,
            caller,
            request_id,
            named,
            stream=bool(body.get("stream")),
            worst_case_micros=lambda endpoints: worst_case_micros(endpoints, body),
            preferences=preferences,
            features=features_used(body),
            prompt_tokens=estimate_prompt(body),
            output_tokens=output_limit(body),
        )

    def send(self, call: Callable[[Provider, Endpoint, dict], Any]) -> tuple[Any, Endpoint]:
        """``call(provider, endpoint, body)`` as a route's attempt: the request as the current
        candidate's variants make it."""
        route = self.metered.route

        def attempt(provider, endpoint):
            body = self.request
            if "thinking" in route.candidate.variants:
                body = provider.with_reasoning(body, endpoint)
            return call(provider, endpoint, body)

        return route.call(attempt)

    @property
    def rate_headers(self) -> dict:
        return self.metered.rate_headers

    def answer(self) -> dict:
        """A non-streaming completion: the chat.completion dict."""
        with self.metered.guard():
            answer, endpoint = self.send(lambda provider, e, body: provider.complete(e, body))
            estimated = not answer.get("usage")
            if estimated:
                text = "".join(str((c.get("message") or {}).get("content") or "") for c in answer["choices"])
                answer["usage"] = estimated_usage(self.request, text)
            answer["usage"] = with_cost(answer["usage"], endpoint)
            answer.update(id=self.completion_id, model=endpoint.model_id, provider=endpoint.provider)
            self.metered.meter.output_started()
            self.metered.finish_when_sent(
                status=OK, endpoint=endpoint, usage=answer["usage"], usage_estimated=estimated
            )
        return answer


def _has_output(chunk: dict) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or any(
            delta.get(k)
            for k in ("content", "tool_calls", "refusal", "function_call", "reasoning", "reasoning_content")
        ):
            return True
    return False


def _output_text(chunk: dict) -> str:
    parts = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        parts.append(str(delta.get("content") or ""))
        for call in delta.get("tool_calls") or ():
            parts.append(str((call.get("function") or {}).get("arguments") or ""))
    return "".join(parts)


class ChatStream:
    """A streamed completion, from its first attempt to its settlement, and the WSGI body that
    serves it: iterate it for the SSE bytes; the server's ``close`` settles it.

    Construction routes until an upstream accepts the request, so a total failure is still an
    ordinary HTTP error. Chunks are held back until the first one with output: until then a
    broken upstream can be replaced by the next attempt without the client seeing two models.
    After output has reached the client there is no switch: a failure becomes an error event.
    Whatever ends the stream (success, upstream failure, client disconnect, an unexpected
    error) bills the tokens produced, once, when the server closes the body.
    """

    def __init__(self, completion: Completion, app):
        self.completion = completion
        self.metered = completion.metered
        self.app = app  # the settlement, at close, runs in an app context of its own
        self.include_usage = bool((completion.request.get("stream_options") or {}).get("include_usage"))
        self.usage = None
        self.output_text = []
        self.status = STREAMING
        self.error_message = None
        self.error_status = 200  # the status of the error event that ended the stream, if one did
        self._events = None
        with self.metered.guard():
            self._open()
        self.metered.hand_over()

    def _open(self) -> None:
        self.upstream, self.endpoint = self.completion.send(lambda provider, e, body: provider.open_stream(e, body))

    def __iter__(self):
        self._events = self._run()
        return self._events

    def close(self) -> None:
        """End the stream (the client may have gone) and settle it; safe to call more than once."""
        if self._events is not None:
            self._events.close()  # a generator left mid-way sees GeneratorExit: the client went away
        self.upstream.close()
        if self.status == STREAMING:
            self.status = CLIENT_DISCONNECTED
        if not self.metered.finished:
            # Under gevent in a greenlet of its own: the next request on the connection does not
            # wait for this settlement (lunos/background.py).
            background(self._settle_in_context)

    def _settle_in_context(self) -> None:
        with self.app.app_context():
            self._settle()

    def _settle(self) -> None:
        # Without the upstream's count, estimate what was produced; nothing produced, nothing billed.
        text = "".join(self.output_text)
        estimated = self.usage is None and bool(text)
        usage = self.usage or (estimated_usage(self.completion.request, text) if text else None)
        self.metered.finish(
            status=self.status,
            endpoint=self.endpoint,
            usage=usage,
            usage_estimated=estimated,
            error=self.error_message,
            http_status=self.error_status,
        )

    def _estimated_usage_chunk(self) -> bytes:
        """The usage Lunos bills when the upstream streamed none, marked as an estimate."""
        usage = with_cost(estimated_usage(self.completion.request, "".join(self.output_text)), self.endpoint)
        usage["estimated"] = True
        return sse_event(
            self._shape({"object": "chat.completion.chunk", "created": int(time.time()), "choices": [], "usage": usage})
        )

    def _shape(self, chunk: dict) -> dict:
        chunk.update(id=self.completion.completion_id, model=self.endpoint.model_id, provider=self.endpoint.provider)
        return chunk

    def _accept(self, chunk: dict, held: list) -> None:
        """Note usage and output of one upstream chunk; queue what the client should see."""
        usage = chunk.get("usage")
        if usage:
            self.usage = chunk["usage"] = with_cost(usage, self.endpoint)
            if not self.include_usage:
                if not chunk.get("choices"):
                    return
                chunk = {k: v for k, v in chunk.items() if k != "usage"}
        self.output_text.append(_output_text(chunk))
        held.append(sse_event(self._shape(chunk)))

    def _run(self):
        held, sent_output = [], False
        # An upstream has accepted the stream: the status and headers go out now, not with the
        # first token (a slow-starting model would outlast a client's read timeout).
        yield b""
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
                            self.metered.meter.output_started()
                            yield b"".join(held)
                            held = []
                    break
                except ProviderError as error:
                    self.upstream.close()
                    if sent_output:
                        raise
                    self.metered.route.failed(error)
                    held, self.output_text, self.usage = [], [], None
                    self._open()
            self.status = OK
            if self.include_usage and self.usage is None:
                held.append(self._estimated_usage_chunk())
            yield b"".join(held) + SSE_DONE
        except ProviderError as error:
            self.status = UPSTREAM_ERROR
            self.error_message = (
                f"The upstream failed mid-stream ({self.endpoint.model_id}, {self.endpoint.provider}): {error.message}"
            )
            self.error_status = UpstreamFailed.status
            yield sse_event(UpstreamFailed(self.error_message).body())
        except LunosError as error:
            self.status, self.error_status = UPSTREAM_ERROR, error.status
            self.error_message = getattr(error, "summary", error.message)
            yield sse_event(error.body())
        except GeneratorExit:
            self.status = CLIENT_DISCONNECTED
            raise
        except Exception as exc:
            log.exception("stream %s failed unexpectedly", self.completion.completion_id)
            self.status, self.error_message = ERROR, f"{INTERNAL_ERROR} ({exc.__class__.__name__})"
            self.error_status = LunosError.status
            yield sse_event(LunosError(INTERNAL_ERROR).body())
        except BaseException:  # the worker is shutting down (gevent's GreenletExit): close() bills it
            self.status = INTERRUPTED
            raise
        finally:
            self.upstream.close()
