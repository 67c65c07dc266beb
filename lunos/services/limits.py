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
    """A key's limits per minute; None is no limit (no counting, no x-ratelimit-* headers)."""
    requests_per_minute: int | None
    tokens_per_minute: int | None

    @cached_property  # read at admission and again when the tokens are counted
    def items(self) -> dict:
        """The limited windows only: requests first, as the headers list them."""
        limits = {"requests": self.requests_per_minute, "tokens": self.tokens_per_minute}
        return {kind: RateLimitItemPerMinute(amount) for kind, amount in limits.items() if amount}


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


def admit(key_id, quota: Quota) -> dict:
    """Count one request against the key's limits and return the x-ratelimit-* headers (a pair
    of limits without a limit has none); raise RateLimited (429 with Retry-After) when a limit
    is spent.

    Four storage calls (Redis round trips) for an admitted request with both limits: the token
    count and its expiry, then the request counter's increment and its expiry; none without."""
    identity, items, storage = _identity(key_id), quota.items, limiter.limiter.storage
    if not items:
        return {}
    requests_item, tokens_item = items.get("requests"), items.get("tokens")
    spent, windows = None, {}
    try:
        # Tokens first, so a request refused for tokens spends no request.
        if tokens_item is not None:
            tokens_key = tokens_item.key_for("tokens", identity)
            tokens_used = storage.get(tokens_key)
            windows["tokens"] = _window(storage, tokens_item, tokens_key, tokens_used)
            spent = "tokens" if tokens_used >= tokens_item.amount else None
        if requests_item is not None:
            requests_key = requests_item.key_for("requests", identity)
            if spent:
                requests_used = storage.get(requests_key)
            else:
                requests_used = storage.incr(requests_key, requests_item.get_expiry())
                spent = "requests" if requests_used > requests_item.amount else None
            windows = {"requests": _window(storage, requests_item, requests_key, requests_used), **windows}
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None
    if spent is None:
        return _headers(windows)
    limit, _remaining, reset_s = windows[spent]
    headers = {**_headers(windows), "Retry-After": str(max(1, reset_s))}
    raise RateLimited(f"Rate limit reached: {limit} {spent} per minute for this key. "
                      f"Try again in {headers['Retry-After']}s.", headers=headers)


def consume_tokens(key_id, quota: Quota, tokens: int) -> None:
    """Count a finished request's tokens. A storage failure here must not undo its billing."""
    item = quota.items.get("tokens")
    if tokens > 0 and item is not None:
        try:
            limiter.limiter.hit(item, "tokens", _identity(key_id), cost=tokens)
        except STORAGE_ERRORS:
            pass  # the next admit reports the storage as down
