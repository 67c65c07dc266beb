"""Rate limits per key: requests/min and tokens/min, in Flask-Limiter's storage.

The storage is Redis when LUNOS_REDIS_URL is set, so every worker and instance shares one count;
memory otherwise (per process). Token limits are weighted by actual tokens: a request is
admitted while the window still has room (``test``, which counts nothing), and its tokens are
counted when it ends.
"""
import math
import time
from dataclasses import dataclass
from functools import cached_property

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

    @cached_property  # read at admission and again when the tokens are counted
    def items(self):
        return {"requests": RateLimitItemPerMinute(self.requests_per_minute),
                "tokens": RateLimitItemPerMinute(self.tokens_per_minute)}


def _identity(key_id):
    return f"lunos-key:{key_id}"


def _window(storage, item, key, used):
    """(limit, remaining, seconds to reset) of one window, for the x-ratelimit-* headers."""
    reset_s = math.ceil(storage.get_expiry(key) - time.time())
    return item.amount, max(0, item.amount - used), max(0, reset_s)


def _headers(windows):
    headers = {}
    for kind, (limit, remaining, reset_s) in windows.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = f"{reset_s}s"
    return headers


def admit(key_id, quota):
    """Count one request against the key's limits and return the x-ratelimit-* headers; raise
    RateLimited (429 with Retry-After) when either limit is spent.

    Four storage calls (Redis round trips) for an admitted request: the token count and its
    expiry, then the request counter's increment and its expiry."""
    identity, items, storage = _identity(key_id), quota.items, limiter.limiter.storage
    requests_key = items["requests"].key_for("requests", identity)
    tokens_key = items["tokens"].key_for("tokens", identity)
    try:
        tokens_used = storage.get(tokens_key)
        tokens = _window(storage, items["tokens"], tokens_key, tokens_used)
        # Tokens first, so a request refused for tokens spends no request.
        if tokens_used >= items["tokens"].amount:
            spent, requests_used = "tokens", storage.get(requests_key)
        else:
            requests_used = storage.incr(requests_key, items["requests"].get_expiry())
            spent = "requests" if requests_used > items["requests"].amount else None
        windows = {"requests": _window(storage, items["requests"], requests_key, requests_used), "tokens": tokens}
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None
    if spent is None:
        return _headers(windows)
    limit, _remaining, reset_s = windows[spent]
    headers = {**_headers(windows), "Retry-After": str(max(1, reset_s))}
    raise RateLimited(f"Rate limit reached: {limit} {spent} per minute for this key. "
                      f"Try again in {headers['Retry-After']}s.", headers=headers)


def consume_tokens(key_id, quota, tokens):
    """Count a finished request's tokens. A storage failure here must not undo its billing."""
    if tokens > 0:
        try:
            limiter.limiter.hit(quota.items["tokens"], "tokens", _identity(key_id), cost=tokens)
        except STORAGE_ERRORS:
            pass  # the next admit reports the storage as down
