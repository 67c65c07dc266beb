"""Rate limits per key: requests/min and tokens/min, in Flask-Limiter's storage.

The storage is Redis when LUNOS_REDIS_URL is set, so every worker and instance shares one count;
memory otherwise (per process). Token limits are weighted by actual tokens: a request is
admitted while the window still has room (``test``, which counts nothing), and its tokens are
counted when it ends.
"""
import math
import time
from dataclasses import dataclass

import redis
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage

from lunos.errors import RateLimited, ServiceUnavailable
from lunos.extensions import limiter

STORAGE_ERRORS = (redis.RedisError, ConnectionError, OSError)
MEMORY_STORAGE_URI = "lunos-memory://"


class LazyMemoryStorage(MemoryStorage):
    """limits' in-process storage, minus the timer it restarts on increments to sweep expired
    counters: under gevent that costs a new thread every 10 ms and a trip through the event loop
    on every request. A fixed window needs no sweep: ``get`` drops an expired counter when read,
    and there are at most two counters per key."""

    STORAGE_SCHEME = ["lunos-memory"]

    def incr(self, key, expiry, amount=1):
        self.get(key)
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = time.time() + expiry
        return self.storage[key]


@dataclass(frozen=True)
class Quota:
    requests_per_minute: int
    tokens_per_minute: int

    def items(self):
        return {"requests": RateLimitItemPerMinute(self.requests_per_minute),
                "tokens": RateLimitItemPerMinute(self.tokens_per_minute)}


def _identity(key_id):
    return f"lunos-key:{key_id}"


def _windows(items, identity):
    """{kind: (limit, remaining, seconds to reset)} for the x-ratelimit-* headers."""
    now = time.time()
    windows = {}
    for kind, item in items.items():
        stats = limiter.limiter.get_window_stats(item, kind, identity)
        windows[kind] = (item.amount, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - now)))
    return windows


def _headers(windows):
    headers = {}
    for kind, (limit, remaining, reset_s) in windows.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = f"{reset_s}s"
    return headers


def admit(key_id, quota):
    """Count one request against the key's limits and return the x-ratelimit-* headers; raise
    RateLimited (429 with Retry-After) when either limit is spent."""
    identity, items = _identity(key_id), quota.items()
    try:
        # Tokens first, so a request refused for tokens spends no request.
        if not limiter.limiter.test(items["tokens"], "tokens", identity):
            spent = "tokens"
        elif not limiter.limiter.hit(items["requests"], "requests", identity):
            spent = "requests"
        else:
            return _headers(_windows(items, identity))
        windows = _windows(items, identity)
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None
    limit, _remaining, reset_s = windows[spent]
    headers = {**_headers(windows), "Retry-After": str(max(1, reset_s))}
    raise RateLimited(f"Rate limit reached: {limit} {spent} per minute for this key. "
                      f"Try again in {headers['Retry-After']}s.", headers=headers)


def consume_tokens(key_id, quota, tokens):
    """Count a finished request's tokens. A storage failure here must not undo its billing."""
    if tokens > 0:
        try:
            limiter.limiter.hit(quota.items()["tokens"], "tokens", _identity(key_id), cost=tokens)
        except STORAGE_ERRORS:
            pass  # the next admit reports the storage as down
