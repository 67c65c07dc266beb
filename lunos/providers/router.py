"""Routing with fallbacks: each candidate model gets bounded, jittered retries, then the next.

Retryable: connect errors, timeouts, 408, 409, 429 and 5xx. Retry-After is honoured up to a cap;
a longer one moves on to the next candidate at once.
"""
import random
import time
from dataclasses import asdict, dataclass

from lunos.errors import InvalidRequest, UpstreamFailed, UpstreamTimedOut
from lunos.providers.base import ProviderError

# Upstream answers that say the request itself is wrong: every candidate would say the same.
CLIENT_ERROR_STATUSES = frozenset({400, 413, 422})


@dataclass
class Attempt:
    model: str
    provider: str
    status: int | None
    error: str | None = None
    timed_out: bool = False
    latency_ms: int = 0

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_s: float = 0.5
    retry_after_cap_s: float = 10.0
    backoff_cap_s: float = 8.0

    def delay(self, retry_number, retry_after):
        """Seconds to wait before retry ``retry_number`` (1-based); None means do not retry."""
        if retry_after is not None:
            return retry_after if retry_after <= self.retry_after_cap_s else None
        ceiling = min(self.backoff_cap_s, self.backoff_s * 2 ** (retry_number - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads out clients that failed together


class RoutePlan:
    """Where routing stands: which candidate, how many retries it has had."""

    def __init__(self, candidates, policy):
        self.candidates = list(candidates)
        self.policy = policy
        self.index = 0
        self.retries = 0

    @property
    def current(self):
        return self.candidates[self.index] if self.index < len(self.candidates) else None

    def after_failure(self, error):
        """Advance past a failed attempt; return the seconds to wait before the next one."""
        if error.retryable and self.retries < self.policy.max_retries:
            delay = self.policy.delay(self.retries + 1, error.retry_after)
            if delay is not None:
                self.retries += 1
                return delay
        self.index += 1
        self.retries = 0
        return 0


class Router:
    def __init__(self, providers, policy, sleep=time.sleep):
        self.providers = providers
        self.policy = policy
        self.sleep = sleep

    def plan(self, candidates):
        return RoutePlan(candidates, self.policy)

    def run(self, plan, call, attempts):
        """Call ``call(provider, model)`` along the plan until one succeeds: (result, model)."""
        while (model := plan.current) is not None:
            started = time.monotonic()
            try:
                result = call(self.providers[model.provider], model)
            except ProviderError as error:
                self.record_failure(plan, model, error, attempts, started)
                continue
            attempts.append(Attempt(model.id, model.provider, 200,
                                    latency_ms=int((time.monotonic() - started) * 1000)))
            return result, model
        raise all_failed(attempts)

    def record_failure(self, plan, model, error, attempts, started):
        attempts.append(Attempt(model.id, model.provider, error.status, error.message, error.timed_out,
                                int((time.monotonic() - started) * 1000)))
        delay = plan.after_failure(error)
        if delay:
            self.sleep(delay)


def all_failed(attempts):
    failures = [a for a in attempts if a.status != 200]
    summary = "; ".join(f"{a.model} ({a.provider}): {a.error}" for a in failures)
    if failures and all(a.status in CLIENT_ERROR_STATUSES for a in failures):
        return InvalidRequest(f"The upstream rejected the request: {summary}")
    if failures and all(a.timed_out for a in failures):
        return UpstreamTimedOut(f"Every candidate model timed out: {summary}")
    return UpstreamFailed(f"Every candidate model failed: {summary}")
