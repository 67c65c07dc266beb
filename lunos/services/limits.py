"""Rate limits per key: requests/min and tokens/min, in Flask-Limiter's storage.

The storage is Redis when LUNOS_REDIS_URL is set, so every worker and instance shares one count;
memory otherwise (per process). Token limits are weighted by actual tokens: a request is
admitted while the window still has room (``test``, which counts nothing), and its tokens are
counted when it ends. On Redis under gevent a worker sends a key's tokens with that key's next
admission, in the same round trip, or on their own after ``FOLD_S`` when no admission came.
"""

import math
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import gevent
import redis
from flask import current_app
from gevent import monkey
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage, Storage

from lunos.background import background
from lunos.errors import RateLimited, ServiceUnavailable
from lunos.extensions import limiter

STORAGE_ERRORS = (redis.RedisError, ConnectionError, OSError)
MEMORY_STORAGE_URI = "lunos-memory://"
# How long a key's counted tokens may wait in a worker for that key's next admission to carry
# them to Redis. Under load the next one comes within milliseconds: a round trip per request saved.
FOLD_S = 0.1


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


# One round trip to Redis admits a request: the tokens of earlier requests that this worker has
# not sent yet are counted, the token window is read (a request refused for tokens spends no
# request), the request window counted, and both windows' counts and time to reset come back.
# The same keys and fixed windows as limits' own Redis storage (its INCR with an expiry set on
# the first hit), so Flask-Limiter's storage reads and counts them as its own.
_ADMIT = """
local requests_limit, tokens_limit, expiry_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local unsent = tonumber(ARGV[4])
local spent = ''
local tokens_used, tokens_ttl = 0, -2
if tokens_limit > 0 then
  if unsent > 0 then
    tokens_used = redis.call('INCRBY', KEYS[2], unsent)
    if tokens_used == unsent then redis.call('PEXPIRE', KEYS[2], expiry_ms) end
  else
    tokens_used = tonumber(redis.call('GET', KEYS[2]) or '0')
  end
  tokens_ttl = redis.call('PTTL', KEYS[2])
  if tokens_used >= tokens_limit then spent = 'tokens' end
end
local requests_used, requests_ttl = 0, -2
if requests_limit > 0 then
  if spent == '' then
    requests_used = redis.call('INCR', KEYS[1])
    if requests_used == 1 then redis.call('PEXPIRE', KEYS[1], expiry_ms) end
    if requests_used > requests_limit then spent = 'requests' end
  else
    requests_used = tonumber(redis.call('GET', KEYS[1]) or '0')
  end
  requests_ttl = redis.call('PTTL', KEYS[1])
end
return {requests_used, requests_ttl, tokens_used, tokens_ttl, spent}
"""


def admit(key_id: int, quota: Quota) -> dict[str, str]:
    """Count one request against the key's limits and return the x-ratelimit-* headers (a pair
    of limits without a limit has none); raise RateLimited (429 with Retry-After) when a limit
    is spent. On Redis one round trip (``_ADMIT``); in memory, the storage's own calls."""
    items = quota.items
    if not items:
        return {}
    try:
        storage = limiter.storage
        counted = (
            _admit_redis(storage, key_id, items)
            if isinstance(storage, RedisStorage)
            else _admit_memory(storage, key_id, items)
        )
    except STORAGE_ERRORS as exc:
        raise ServiceUnavailable(f"The rate-limit storage is unavailable ({exc.__class__.__name__}).") from None
    windows, spent = counted
    if spent is None:
        return _headers(windows)
    limit, _remaining, reset_s = windows[spent]
    headers = {**_headers(windows), "Retry-After": str(max(1, reset_s))}
    raise RateLimited(
        f"Rate limit reached: {limit} {spent} per minute for this key. Try again in {headers['Retry-After']}s.",
        headers=headers,
    )


def _admit_redis(storage, key_id, items):
    identity, windows = _identity(key_id), {}
    requests_item, tokens_item = items.get("requests"), items.get("tokens")
    keys = [
        f"{storage.key_prefix}:{item.key_for(kind, identity)}" if item else f"{storage.key_prefix}:unused"
        for kind, item in (("requests", requests_item), ("tokens", tokens_item))
    ]
    script, unsent = _script(storage), _unsent(storage)
    folded = unsent.pop(key_id, 0) if tokens_item else 0
    try:
        requests_used, requests_ttl, tokens_used, tokens_ttl, spent = script(
            keys=keys,
            args=[
                requests_item.amount if requests_item else 0,
                tokens_item.amount if tokens_item else 0,
                int(60 * 1000),
                folded,
            ],
        )
    except BaseException:  # a storage error, or the worker stopping (GreenletExit) mid-trip
        # Kept for the next trip. When the script ran and only its answer was lost (redis-py
        # may also have sent it again), these tokens count twice: a limit errs on the strict
        # side; billing never reads these counts.
        if folded:
            _keep_unsent(storage, key_id, tokens_item, folded)
        raise
    for kind, item, used, ttl_ms in (
        ("requests", requests_item, requests_used, requests_ttl),
        ("tokens", tokens_item, tokens_used, tokens_ttl),
    ):
        if item is not None:
            reset_s = math.ceil(ttl_ms / 1000) if ttl_ms > 0 else 0
            windows[kind] = (item.amount, max(0, item.amount - int(used)), reset_s)
    return windows, (spent.decode() if isinstance(spent, bytes) else spent) or None


def _script(storage):
    """The admission script, registered once per storage (it is sent by its SHA after that)."""
    scripts = current_app.extensions.setdefault("lunos-admit-scripts", {})
    script = scripts.get(id(storage))
    if script is None:
        script = scripts[id(storage)] = storage.get_connection().register_script(_ADMIT)
    return script


def _admit_memory(storage, key_id, items):
    identity, windows, spent = _identity(key_id), {}, None
    requests_item, tokens_item = items.get("requests"), items.get("tokens")
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
    return windows, spent


def consume_tokens(key_id: int, quota: Quota, tokens: int) -> None:
    """Count a finished request's tokens, off the request's path: on Redis under gevent with the
    key's next admission (``_keep_unsent``), otherwise at once (a greenlet of its own under
    gevent: a round trip nobody waits for). A storage failure here must not undo its billing;
    the next admission reports the storage as down."""
    item = quota.items.get("tokens")
    if tokens <= 0 or item is None:
        return
    storage = limiter.storage
    if isinstance(storage, RedisStorage) and monkey.is_module_patched("threading"):
        _keep_unsent(storage, key_id, item, tokens)
    else:
        background(_hit, item, _identity(key_id), tokens)


def _unsent(storage) -> dict[int, int]:
    """Tokens per key this worker has counted and not sent to ``storage`` yet."""
    unsent = current_app.extensions.setdefault("lunos-unsent-tokens", {})
    return unsent.setdefault(id(storage), {})


def _keep_unsent(storage, key_id, item, tokens):
    unsent = _unsent(storage)
    waiting = unsent.get(key_id, 0)
    unsent[key_id] = waiting + tokens
    if not waiting:  # the key's next admission takes them, or this sends them: the first of the two
        background(_send_unsent, unsent, key_id, item)


def _send_unsent(unsent, key_id, item):
    gevent.sleep(FOLD_S)  # a graceful shutdown waits for it (background.drain)
    tokens = unsent.pop(key_id, 0)
    if tokens:
        _hit(item, _identity(key_id), tokens)


def _hit(item, identity, tokens):
    try:
        limiter.limiter.hit(item, "tokens", identity, cost=tokens)
    except STORAGE_ERRORS:
        pass
