"""Endpoint health: a circuit breaker and speed figures per endpoint.

The breaker of an endpoint opens after ``consecutive`` retryable failures in a row, or when at
least ``failure_ratio`` of ``window_min`` or more attempts in the last ``window_s`` failed. While
open, the endpoint is skipped for its provider's ``cooldown_s``; then one trial request (the
first to claim it) decides: a success closes the breaker, a failure opens it again. A client's
own error (400, 413, 422) says nothing about the endpoint and is not counted.

Speed, from real traffic: time to first token and output tokens per second, as moving averages.

Each worker decides from its own copy of the board. With Redis the copy is shared: what a
worker saw is added to Redis and the others' read back, at most once a second per worker (by
the request that finds the copy older than that, in one round trip), and at once when this
worker opens or closes a breaker, so a breaker opened anywhere is open everywhere within a
second. Without Redis the board is the worker's own.
"""

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis

log = logging.getLogger(__name__)
EWMA_WEIGHT = 0.2  # of a new sample in the moving averages
BUCKET_S = 10  # the failure window is kept in buckets of this many seconds
SYNC_EVERY_S = 1.0
TRIAL_HOLD_S = 60.0  # a claimed trial that never reports back is given up after this
PREFIX = "lunos:health:"


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive: int = 5
    window_s: float = 60.0
    window_min: int = 10
    failure_ratio: float = 0.5


@dataclass
class _Pending:
    """What this worker saw of one endpoint since it last synced."""

    attempts: int = 0
    failures: int = 0
    trailing_failures: int = 0  # failures since the last success (all, when no success)
    succeeded: bool = False
    ttft_ms: list = field(default_factory=list)
    tps: list = field(default_factory=list)


@dataclass
class EndpointHealth:
    open_until: float = 0.0  # wall-clock seconds; 0 is closed
    trial_until: float = 0.0  # a trial request is running until then
    consecutive: int = 0
    ttft_ms: float | None = None
    tps: float | None = None
    window: deque = field(default_factory=deque)  # (bucket start, attempts, failures), local or shared

    def state(self, now: float) -> str:
        if not self.open_until:
            return "closed"
        return "open" if now < self.open_until else "half_open"


def _ewma(current, samples):
    for sample in samples:
        current = sample if current is None else current + EWMA_WEIGHT * (sample - current)
    return current


class HealthBoard:
    def __init__(
        self,
        cooldowns: dict[str, float],
        policy: BreakerPolicy | None = None,
        redis_url: str | None = None,
        clock=time.time,
    ):
        self.cooldowns = cooldowns  # endpoint key -> its provider's cooldown_s
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._health: dict[str, EndpointHealth] = {}
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        # A small pool of its own that queues when busy: a sync is one round trip a second.
        pool = (
            redis.BlockingConnectionPool.from_url(
                redis_url, max_connections=8, timeout=5, socket_timeout=1.0, socket_connect_timeout=1.0
            )
            if redis_url
            else None
        )
        self._redis = redis.Redis(connection_pool=pool) if pool else None
        self._synced_at = 0.0
        self._trial_held: set[str] = set()  # trials this worker claimed

    def health(self, key: str) -> EndpointHealth:
        found = self._health.get(key)
        if found is None:
            found = self._health[key] = EndpointHealth()
        return found

    # What routing asks.
    def available(self, key: str) -> bool:
        """Whether a request may be sent there now: closed, or half open with no trial running."""
        health, now = self.health(key), self.clock()
        state = health.state(now)
        return state == "closed" or (state == "half_open" and now >= health.trial_until)

    def begin(self, key: str) -> bool:
        """An attempt is about to go to ``key``: True when it may (a half-open breaker lets only
        the request that claims its trial through)."""
        health, now = self.health(key), self.clock()
        state = health.state(now)
        if state != "half_open":
            return True  # closed; or open and tried anyway because every endpoint is
        if now < health.trial_until or not self._claim_trial(key):
            return False
        health.trial_until = now + TRIAL_HOLD_S
        self._trial_held.add(key)
        return True

    # What routing reports.
    def succeeded(self, key: str) -> None:
        health = self.health(key)
        with self._lock:
            pending = self._seen(key)
            pending.attempts += 1
            pending.succeeded, pending.trailing_failures = True, 0
        health.consecutive = 0
        self._count(health, failed=False)
        if health.open_until or key in self._trial_held:  # the trial passed: closed for everyone
            health.open_until = health.trial_until = 0.0
            self._trial_held.discard(key)
            self.sync(closing={key})

    def failed(self, key: str) -> None:
        health, now = self.health(key), self.clock()
        with self._lock:
            pending = self._seen(key)
            pending.attempts += 1
            pending.failures += 1
            pending.trailing_failures += 1
        health.consecutive += 1
        self._count(health, failed=True)
        if key in self._trial_held or self._should_open(key, health, now):
            self._open(key, health, now)
            self.sync(opening={key})

    def observe(self, key: str, ttft_ms: float | None, tokens_per_s: float | None) -> None:
        """Speed of one answer that went well."""
        health = self.health(key)
        with self._lock:
            pending = self._seen(key)
            if ttft_ms is not None:
                pending.ttft_ms.append(ttft_ms)
                health.ttft_ms = _ewma(health.ttft_ms, [ttft_ms])
            if tokens_per_s is not None:
                pending.tps.append(tokens_per_s)
                health.tps = _ewma(health.tps, [tokens_per_s])

    def _seen(self, key: str) -> _Pending:
        """What is kept of ``key`` for the next sync (thrown away when nothing is shared)."""
        return self._pending.setdefault(key, _Pending()) if self._redis is not None else _Pending()

    def summary(self, key: str) -> dict:
        health, now = self.health(key), self.clock()
        attempts, failures = self._window(key, health, now)
        return {
            "state": health.state(now),
            "open_until": health.open_until if health.state(now) == "open" else None,
            "consecutive_failures": health.consecutive,
            "recent_attempts": attempts,
            "recent_failures": failures,
            "ttft_ms": round(health.ttft_ms, 1) if health.ttft_ms is not None else None,
            "tokens_per_second": round(health.tps, 1) if health.tps is not None else None,
        }

    # The breaker.
    def _count(self, health: EndpointHealth, failed: bool) -> None:
        if self._redis is not None:
            return  # the shared window comes back from Redis at the next sync, this attempt in it
        bucket = int(self.clock() // BUCKET_S) * BUCKET_S
        if health.window and health.window[-1][0] == bucket:
            start, attempts, failures = health.window.pop()
            health.window.append((start, attempts + 1, failures + int(failed)))
        else:
            health.window.append((bucket, 1, int(failed)))

    def _window(self, key: str, health: EndpointHealth, now: float) -> tuple[int, int]:
        """(attempts, failures) in the window: the shared buckets and what this worker saw since."""
        horizon = now - self.policy.window_s
        while health.window and health.window[0][0] + BUCKET_S <= horizon:
            health.window.popleft()
        unsent = self._pending.get(key) or _Pending()
        return (
            sum(a for _, a, _ in health.window) + unsent.attempts,
            sum(f for _, _, f in health.window) + unsent.failures,
        )

    def _should_open(self, key: str, health: EndpointHealth, now: float) -> bool:
        if health.state(now) == "open":
            return False
        if health.consecutive >= self.policy.consecutive:
            return True
        attempts, failures = self._window(key, health, now)
        return attempts >= self.policy.window_min and failures >= self.policy.failure_ratio * attempts

    def _open(self, key: str, health: EndpointHealth, now: float) -> None:
        health.open_until = now + self.cooldowns.get(key, 30.0)
        health.trial_until = 0.0
        health.consecutive = 0
        health.window.clear()
        self._trial_held.discard(key)
        log.warning("endpoint %s: breaker open for %.0f s", key, health.open_until - now)

    def _claim_trial(self, key: str) -> bool:
        if self._redis is None:
            return True
        try:
            return bool(self._redis.set(f"{PREFIX}{key}:trial", "1", nx=True, px=int(TRIAL_HOLD_S * 1000)))
        except redis.RedisError:
            return True  # Redis away: decide locally

    # Sharing through Redis.
    def refresh_if_stale(self) -> None:
        """At most once a second: send what this worker saw, read what every worker saw."""
        if self._redis is not None and self.clock() - self._synced_at >= SYNC_EVERY_S:
            self.sync()

    def sync(self, opening: set = frozenset(), closing: set = frozenset()) -> None:
        if self._redis is None:
            return
        now = self.clock()
        self._synced_at = now
        with self._lock:
            pending, self._pending = self._pending, {}
        bucket = int(now // BUCKET_S) * BUCKET_S
        keys = sorted(set(self.cooldowns) | set(pending))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, seen in pending.items():
                name = PREFIX + key
                if seen.attempts:
                    pipe.hincrby(name, f"n:{bucket}", seen.attempts)
                if seen.failures:
                    pipe.hincrby(name, f"f:{bucket}", seen.failures)
                if seen.succeeded:
                    pipe.hset(name, "consecutive", seen.trailing_failures)
                elif seen.trailing_failures:
                    pipe.hincrby(name, "consecutive", seen.trailing_failures)
                health = self.health(key)
                if seen.ttft_ms and health.ttft_ms is not None:
                    pipe.hset(name, "ttft_ms", health.ttft_ms)
                if seen.tps and health.tps is not None:
                    pipe.hset(name, "tps", health.tps)
                pipe.expire(name, 24 * 3600)
            for key in opening:
                pipe.hset(PREFIX + key, mapping={"open_until": self.health(key).open_until, "consecutive": 0})
                pipe.delete(f"{PREFIX}{key}:trial")
            for key in closing:
                pipe.hset(PREFIX + key, mapping={"open_until": 0, "consecutive": 0})
                pipe.delete(f"{PREFIX}{key}:trial")
            for key in keys:
                pipe.hgetall(PREFIX + key)
            replies = pipe.execute()[-len(keys) :] if keys else []
        except redis.RedisError as exc:
            log.warning("endpoint health not shared this time: %s", exc)
            with self._lock:  # keep what was seen for the next sync
                for key, seen in pending.items():
                    kept = self._pending.setdefault(key, _Pending())
                    kept.attempts += seen.attempts
                    kept.failures += seen.failures
                    kept.trailing_failures = (
                        seen.trailing_failures if kept.succeeded else kept.trailing_failures + seen.trailing_failures
                    )
                    kept.succeeded = kept.succeeded or seen.succeeded
            return
        opened = {
            key
            for key, fields in zip(keys, replies)
            if self._merge(key, {k.decode(): v.decode() for k, v in fields.items()}, now)
        }
        if opened:
            self.sync(opening=opened)

    def _merge(self, key: str, fields: dict, now: float) -> bool:
        """Take in what every worker saw of ``key``; True when that opens its breaker here."""
        health = self.health(key)
        shared_open = float(fields.get("open_until") or 0)
        if key not in self._trial_held:
            health.open_until = shared_open
        health.consecutive = int(fields.get("consecutive") or 0)
        for name, attribute in (("ttft_ms", "ttft_ms"), ("tps", "tps")):
            if name in fields:
                setattr(health, attribute, float(fields[name]))
        horizon = now - self.policy.window_s
        buckets = {}
        for name, value in fields.items():
            kind, _, start = name.partition(":")
            if kind in ("n", "f") and start.isdigit() and int(start) + BUCKET_S > horizon:
                buckets.setdefault(int(start), [0, 0])[kind == "f"] += int(value)
        health.window = deque((start, counts[0], counts[1]) for start, counts in sorted(buckets.items()))
        if self._should_open(key, health, now):
            self._open(key, health, now)
            return True
        return False
