"""Rate limits per key: requests/min and tokens/min, in Flask-Limiter's storage.

The storage is Redis when LUNOS_REDIS_URL is set, so every worker and instance shares one count;
memory otherwise (per process). Token limits are weighted by actual tokens: a request is
admitted while the window still has room (``test``, which counts nothing), and its tokens are
counted when it ends.
"""

import math
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import redis
from limits import RateLimitItemPerMinute
from limits.storage import Storage

from lunos.errors import RateLimited, ServiceUnavailable
from lunos.extensions import limiter

STORAGE_ERRORS = (redis.RedisError, ConnectionError, OSError)
MEMORY_STORAGE_URI = "lunos-memory://"


class FixedWindowMemoryStorage(Storage):
    """Per-process counters for limits' fixed-window strategy, built on limits' public Storage
    interface and found by its scheme (``lunos-memory://``), as limits documents for custom
    storages.

    limits' own MemoryStorage restarts a sweep timer on increments: under gevent a new thread
    every 10 ms and a trip through the event loop on every request. A fixed window needs no
    sweep: an expired window is dropped when it is read, and a key has at most two (requests
    and tokens)."""

    STORAGE_SCHEME = ["lunos-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._windows: dict[str, list] = {}  # key -> [count, when it expires (time.time())]
        self._lock = threading.Lock()  # an increment reads then writes; the dev server has threads

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError  # nothing here fails as a storage does; what limits' memory storage names

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[1] <= now:  # the first count of a window sets its end
                window = self._windows[key] = [0, now + expiry]
            window[0] += amount
            return window[0]

    def get(self, key: str) -> int:
        window = self._windows.get(key)
        if window is None:
            return 0
        if window[1] <= time.time():
            with self._lock:  # unless an increment has just begun the next window
                if self._windows.get(key) is window:
                    del self._windows[key]
            return 0
        return window[0]

    def get_expiry(self, key: str) -> float:
        window = self._windows.get(key)
        return time.time() if window is None else window[1]

    def check(self) -> bool:
        return True

    def reset(self) -> int:
        with self._lock:
            count = len(self._windows)
            self._windows.clear()
        return count

    def clear(self, key: str) -> None:
        self._windows.pop(key, None)


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


def admit(key_id: int, quota: Quota) -> dict[str, str]:
    """Count one request against the key's limits and return the x-ratelimit-* headers (a pair
    of limits without a limit has none); raise RateLimited (429 with Retry-After) when a limit
    is spent.

    Four storage calls (Redis round trips) for an admitted request with both limits: the token
    count and its expiry, then the request counter's increment and its expiry; none without."""
    identity, items, storage = _identity(key_id), quota.items, limiter.storage
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
    raise RateLimited(
        f"Rate limit reached: {limit} {spent} per minute for this key. Try again in {headers['Retry-After']}s.",
        headers=headers,
    )


def consume_tokens(key_id: int, quota: Quota, tokens: int) -> None:
    """Count a finished request's tokens. A storage failure here must not undo its billing."""
    item = quota.items.get("tokens")
    if tokens > 0 and item is not None:
        try:
            limiter.limiter.hit(item, "tokens", _identity(key_id), cost=tokens)
        except STORAGE_ERRORS:
            pass  # the next admit reports the storage as down
