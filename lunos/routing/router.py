"""Routing: candidate models, each served by endpoints; retries, failover and fallbacks.

``Router.route(candidates, ...)`` plans a request's way: for each candidate model (``model``,
then ``fallback_model``, then ``models``) the endpoints the request's preferences allow
(routing/preferences.py), in the order of its strategy (routing/strategies.py), with the
endpoints whose breaker is open set aside (routing/health.py). When every endpoint of every
candidate is open they are tried anyway: health alone never refuses a request.

A ``Route`` owns that plan, the attempts and the clock. Each candidate gets at most
``1 + max_retries`` attempts. A retryable failure (connect errors, timeouts, 408, 409, 429, 5xx)
moves the next attempt to another endpoint of the same model at once; once every endpoint was
tried, to the same endpoint again after a jittered backoff, honouring Retry-After up to a cap
(a longer one moves on to the next candidate). A failure that says the request itself is wrong
(400, 413, 422) moves straight on to the next candidate. Callers only ``call`` the route and,
when a stream broke before any output reached the client, tell it ``failed``.
"""

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from lunos.catalog import Endpoint
from lunos.errors import InvalidRequest, LunosError, RateLimited, UpstreamFailed, UpstreamRejected, UpstreamTimedOut
from lunos.providers.base import ProviderError
from lunos.routing import strategies
from lunos.routing.health import HealthBoard
from lunos.routing.preferences import Candidate, Preferences, filter_endpoints

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
    upstream_model: str | None = None
    skipped: str | None = None  # set aside without a call, and why

    def as_dict(self) -> dict:
        # Every field holds a str, a number, a bool or None: a shallow copy is the whole copy,
        # without the recursive walk and deepcopy of dataclasses.asdict on each settlement.
        return {name: getattr(self, name) for name in _ATTEMPT_FIELDS}


_ATTEMPT_FIELDS = tuple(f.name for f in fields(Attempt))


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


@dataclass
class Leg:
    """One candidate's part of a plan: its endpoints to try, in order, and those set aside."""

    candidate: Candidate
    endpoints: list
    set_aside: list = field(default_factory=list)  # (endpoint, reason)
    allowed: list = field(default_factory=list)  # every endpoint the request allows, in order


class Route:
    def __init__(self, router: "Router", legs: list[Leg]):
        self.router = router
        self.legs = legs
        self.attempts: list[Attempt] = []
        self.errors: list[ProviderError] = []  # of the failed attempts, in order
        self._leg = -1
        self._next_leg()
        self._started = None

    @property
    def candidate(self) -> Candidate | None:
        return self.legs[self._leg].candidate if self._leg < len(self.legs) else None

    @property
    def endpoints(self) -> list[Endpoint]:
        """Every endpoint this route may try: what a reservation must cover."""
        return [endpoint for leg in self.legs for endpoint in leg.allowed]

    def call(self, fn: Callable[[Any, Endpoint], Any]) -> tuple[Any, Endpoint]:
        """Call ``fn(provider, endpoint)`` along the route until one succeeds: (result, endpoint).
        Raises the error of the whole route (see ``all_failed``) when every attempt failed."""
        health = self.router.health
        while (endpoint := self._current_endpoint()) is not None:
            if not health.begin(endpoint.key):  # half open, and another request holds its trial
                self._skip(endpoint, "breaker half open: another request is its trial")
                continue
            self._started = time.monotonic()
            try:
                result = fn(self.router.providers[endpoint.provider], endpoint)
            except ProviderError as error:
                self.failed(error)
                continue
            health.succeeded(endpoint.key)
            self.attempts.append(
                Attempt(
                    endpoint.model_id,
                    endpoint.provider,
                    200,
                    latency_ms=self._elapsed_ms(),
                    upstream_model=endpoint.upstream_model,
                )
            )
            return result, endpoint
        raise all_failed(self.attempts, self.errors)

    def failed(self, error: ProviderError) -> None:
        """Record that the current attempt failed (also after it had succeeded at first, as a
        stream that broke before any output), and move on."""
        endpoint = self._current_endpoint()
        code = error.upstream.get("code")
        self.attempts.append(
            Attempt(
                endpoint.model_id,
                endpoint.provider,
                error.status,
                error.message,
                error.timed_out,
                self._elapsed_ms(),
                str(code) if code is not None else None,
                error.retry_after,
                endpoint.upstream_model,
            )
        )
        self.errors.append(error)
        if error.status not in CLIENT_ERROR_STATUSES:
            self.router.health.failed(endpoint.key)
        if not error.retryable or self._retries >= self.router.policy.max_retries:
            return self._next_leg()
        self._retries += 1
        leg = self.legs[self._leg]
        if self._position + 1 < len(leg.endpoints):  # another endpoint of this model: at once
            self._position += 1
            return None
        delay = self.router.policy.delay(self._retries, error.retry_after)
        if delay is None:
            return self._next_leg()
        if delay:
            self.router.sleep(delay)
        return None

    def observe(self, endpoint: Endpoint, ttft_s: float | None, output_tokens: int, generating_s: float) -> None:
        """The speed of an answer that went well, for ``sort`` = latency and throughput."""
        tokens_per_s = output_tokens / generating_s if output_tokens and generating_s > 0 else None
        self.router.health.observe(endpoint.key, ttft_s * 1000 if ttft_s is not None else None, tokens_per_s)

    def _current_endpoint(self) -> Endpoint | None:
        while self._leg < len(self.legs):
            leg = self.legs[self._leg]
            if leg.endpoints:
                return leg.endpoints[min(self._position, len(leg.endpoints) - 1)]
            self._next_leg()
        return None

    def _skip(self, endpoint: Endpoint, reason: str) -> None:
        self.attempts.append(
            Attempt(endpoint.model_id, endpoint.provider, None, upstream_model=endpoint.upstream_model, skipped=reason)
        )
        leg = self.legs[self._leg]
        leg.endpoints = [e for e in leg.endpoints if e is not endpoint]
        self._position = min(self._position, max(len(leg.endpoints) - 1, 0))

    def _next_leg(self) -> None:
        self._leg += 1
        self._position = self._retries = 0
        if self._leg < len(self.legs):
            for endpoint, reason in self.legs[self._leg].set_aside:
                self.attempts.append(
                    Attempt(
                        endpoint.model_id,
                        endpoint.provider,
                        None,
                        upstream_model=endpoint.upstream_model,
                        skipped=reason,
                    )
                )

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000) if self._started else 0


class Router:
    def __init__(
        self,
        providers: dict,
        policy: RetryPolicy,
        health: HealthBoard,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.providers = providers
        self.policy = policy
        self.health = health
        self.sleep = sleep
        self.rng = rng or random.Random()

    def route(
        self,
        candidates: list[Candidate],
        preferences: Preferences | None = None,
        features: set = frozenset(),
        prompt_tokens: int = 0,
        output_tokens: int | None = None,
    ) -> Route:
        """The plan of a request: raises InvalidRequest (code no_endpoints) when its preferences
        leave no endpoint for any candidate."""
        preferences = preferences or Preferences()
        self.health.refresh_if_stale()
        legs, removals = [], []
        for candidate in candidates:
            allowed, removed = filter_endpoints(candidate, preferences, features, prompt_tokens, output_tokens)
            ordered = strategies.order(allowed, candidate.sort(preferences), preferences.order, self.health, self.rng)
            available = [e for e in ordered if self.health.available(e.key)]
            legs.append(
                Leg(
                    candidate,
                    available,
                    removed + [(e, "breaker open") for e in ordered if e not in available],
                    ordered,
                )
            )
            removals.append((candidate, removed))
        if not any(leg.allowed for leg in legs):
            raise no_endpoints(removals)
        if not any(leg.endpoints for leg in legs):  # every breaker open: try them anyway
            for leg, (_, removed) in zip(legs, removals):
                leg.endpoints, leg.set_aside = list(leg.allowed), removed
        return Route(self, legs)


def no_endpoints(removals) -> InvalidRequest:
    reasons = "; ".join(
        f"{candidate.id}: " + ", ".join(f"{e.provider} ({reason})" for e, reason in removed)
        for candidate, removed in removals
    )
    return InvalidRequest(
        f"No endpoint of the requested models meets the request's provider preferences: {reasons}.",
        param="provider",
        code="no_endpoints",
    )


def all_failed(attempts: list[Attempt], errors: list[ProviderError]) -> LunosError:
    """The error of a route on which every attempt failed, as a client should see it.

    Every candidate rejected the request itself (400, 413, 422): the last upstream's own status,
    type, code, param and message, so a client sees a context overflow as OpenAI would send it.
    Every attempt was rate limited: 429 with the shortest Retry-After. Otherwise 502, or 504 when
    every attempt timed out; Lunos has retried already, so those say ``x-should-retry: false``."""
    summary = "; ".join(
        f"{a.model} ({a.provider}): {a.error}" for a in attempts if a.status != 200 and a.skipped is None
    )
    if errors and all(e.status in CLIENT_ERROR_STATUSES for e in errors):
        last = errors[-1]
        return UpstreamRejected(
            str(last.upstream.get("message") or last.message),
            status=last.status,
            type=last.upstream.get("type"),
            param=last.upstream.get("param"),
            code=last.upstream.get("code"),
            summary=summary,
        )
    if errors and all(e.status == 429 for e in errors):
        waits = [e.retry_after for e in errors if e.retry_after is not None]
        headers = {"Retry-After": str(max(1, math.ceil(min(waits))))} if waits else {}
        return RateLimited(
            f"Every candidate model is rate limited upstream: {summary}", code="upstream_rate_limited", headers=headers
        )
    no_retry = {"x-should-retry": "false"}
    if errors and all(e.timed_out for e in errors):
        return UpstreamTimedOut(f"Every candidate model timed out: {summary}", headers=no_retry)
    return UpstreamFailed(f"Every candidate model failed: {summary or 'no endpoint could be tried'}", headers=no_retry)
