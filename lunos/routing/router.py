"""Routing with fallbacks: each candidate model gets bounded, jittered retries, then the next.

Retryable: connect errors, timeouts, 408, 409, 429 and 5xx. Retry-After is honoured up to a cap;
a longer one moves on to the next candidate at once.

``Router.route(models)`` gives a ``Route``: one request's way through its candidates, which owns
the plan, the attempts and the clock. Callers only ``call`` it and, when a stream breaks before
any output reached the client, tell it ``failed``.
"""
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lunos.errors import LunosError, RateLimited, UpstreamFailed, UpstreamRejected, UpstreamTimedOut
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
    code: str | None = None  # the upstream's own error code
    retry_after: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff_s: float = 0.5
    retry_after_cap_s: float = 10.0
    backoff_cap_s: float = 8.0

    def delay(self, retry_number: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based); None means do not retry."""
        if retry_after is not None:
            return retry_after if retry_after <= self.retry_after_cap_s else None
        ceiling = min(self.backoff_cap_s, self.backoff_s * 2 ** (retry_number - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads out clients that failed together


class Route:
    """Where one request's routing stands: the candidates, the current one and its retries,
    every attempt made, and when the current attempt began."""

    def __init__(self, router: "Router", candidates: list):
        self.router = router
        self.candidates = list(candidates)
        self.attempts: list[Attempt] = []
        self.errors: list[ProviderError] = []  # of the failed attempts, in order
        self._index = 0
        self._retries = 0
        self._started = None

    @property
    def current(self):
        return self.candidates[self._index] if self._index < len(self.candidates) else None

    def call(self, fn: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
        """Call ``fn(provider, model)`` along the route until one succeeds: (result, model).
        Raises the error of the whole route (see ``all_failed``) when every candidate failed."""
        while (model := self.current) is not None:
            self._started = time.monotonic()
            try:
                result = fn(self.router.providers[model.provider], model)
            except ProviderError as error:
                self.failed(error)
                continue
            self.attempts.append(Attempt(model.id, model.provider, 200, latency_ms=self._elapsed_ms()))
            return result, model
        raise all_failed(self.attempts, self.errors)

    def failed(self, error: ProviderError) -> None:
        """Record that the current attempt failed (also after it had succeeded at first, as a
        stream that broke before any output), and move on: a retry after its backoff, or the
        next candidate."""
        model = self.current
        code = error.upstream.get("code")
        self.attempts.append(Attempt(model.id, model.provider, error.status, error.message, error.timed_out,
                                     self._elapsed_ms(), str(code) if code is not None else None,
                                     error.retry_after))
        self.errors.append(error)
        if error.retryable and self._retries < self.router.policy.max_retries:
            delay = self.router.policy.delay(self._retries + 1, error.retry_after)
            if delay is not None:
                self._retries += 1
                if delay:
                    self.router.sleep(delay)
                return
        self._index += 1
        self._retries = 0

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000) if self._started else 0


class Router:
    def __init__(self, providers: dict, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep):
        self.providers = providers
        self.policy = policy
        self.sleep = sleep

    def route(self, candidates: list) -> Route:
        return Route(self, candidates)


def all_failed(attempts: list[Attempt], errors: list[ProviderError]) -> LunosError:
    """The error of a route on which every attempt failed, as a client should see it.

    Every candidate rejected the request itself (400, 413, 422): the last upstream's own status,
    type, code, param and message, so a client sees a context overflow as OpenAI would send it.
    Every attempt was rate limited: 429 with the shortest Retry-After. Otherwise 502, or 504 when
    every attempt timed out; Lunos has retried already, so those say ``x-should-retry: false``."""
    summary = "; ".join(f"{a.model} ({a.provider}): {a.error}" for a in attempts if a.status != 200)
    if errors and all(e.status in CLIENT_ERROR_STATUSES for e in errors):
        last = errors[-1]
        return UpstreamRejected(str(last.upstream.get("message") or last.message), status=last.status,
                                type=last.upstream.get("type"), param=last.upstream.get("param"),
                                code=last.upstream.get("code"), summary=summary)
    if errors and all(e.status == 429 for e in errors):
        waits = [e.retry_after for e in errors if e.retry_after is not None]
        headers = {"Retry-After": str(max(1, math.ceil(min(waits))))} if waits else {}
        return RateLimited(f"Every candidate model is rate limited upstream: {summary}",
                           code="upstream_rate_limited", headers=headers)
    no_retry = {"x-should-retry": "false"}
    if errors and all(e.timed_out for e in errors):
        return UpstreamTimedOut(f"Every candidate model timed out: {summary}", headers=no_retry)
    return UpstreamFailed(f"Every candidate model failed: {summary}", headers=no_retry)
