"""One usage event per chat completion, whatever its outcome, settled against its reservation."""
import logging
import time

from lunos.services import credits, limits
from lunos.tokens import prompt_upper_estimate

log = logging.getLogger(__name__)


def worst_case_micros(models, body):
    """The most any candidate could cost: a generous prompt estimate plus the most output allowed."""
    prompt = prompt_upper_estimate(body)
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    choices = body.get("n") or 1
    return max(m.cost_micros(prompt, min(asked or m.max_output_tokens, m.max_output_tokens) * choices)
               for m in models)


def usage_tokens(usage):
    usage = usage or {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "cached_tokens": int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            "reasoning_tokens": int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)}


class Meter:
    """Follows one request from admission to its single usage event."""

    def __init__(self, caller, request_id, requested_model, stream):
        self.caller = caller
        self.request_id = request_id
        self.requested_model = requested_model
        self.stream = stream
        self.started = time.monotonic()
        self.first_output_at = None
        self.reservation_id = None
        self.rate_headers = {}
        self.event = None

    def admit(self, models, body):
        """Rate limits, then the reservation; either refusal is raised."""
        self.rate_headers = limits.admit(self.caller.key_id, self.caller.quota)
        credits.reserve(self.caller.account_id, worst_case_micros(models, body), self.request_id, self.caller.key)
        self.reservation_id = self.request_id

    def output_started(self):
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()

    def finish(self, *, status, http_status=200, model=None, usage=None, usage_estimated=False,
               attempts=(), error=None):
        """Write the usage event (kept as ``self.event``, a dict) and settle; only the first call counts."""
        if self.event is not None:
            return self.event
        tokens = usage_tokens(usage)
        cost = model.cost_micros(tokens["prompt_tokens"], tokens["completion_tokens"]) if model else 0
        self.event = dict(
            id=self.request_id, account_id=self.caller.account_id, key_id=self.caller.key_id,
            app_id=self.caller.app_id, requested_model=self.requested_model,
            model=model.id if model else None, provider=model.provider if model else None,
            stream=self.stream, status=status, http_status=http_status, error=error,
            usage_estimated=usage_estimated, cost_micros=cost,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=int((self.first_output_at - self.started) * 1000) if self.first_output_at else None,
            attempts=[a.as_dict() for a in attempts], **tokens)
        try:
            credits.settle(self.reservation_id, self.caller.account_id, self.event)
        except Exception:
            # The reservation stays open (visible in /v1/balance as reserved) rather than
            # anything being billed twice; `flask lunos release-reservations` settles it later.
            log.exception("could not settle request %s", self.request_id)
            raise
        limits.consume_tokens(self.caller.key_id, self.caller.quota,
                              tokens["prompt_tokens"] + tokens["completion_tokens"])
        return self.event
