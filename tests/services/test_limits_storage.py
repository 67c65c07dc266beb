"""The per-process rate-limit storage: limits' public Storage interface, a fixed window per key,
and no timer or thread per increment."""

import threading

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from lunos.services import limits as lunos_limits
from lunos.services.limits import MEMORY_STORAGE_URI, FixedWindowMemoryStorage


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_the_scheme_finds_the_storage():
    assert isinstance(storage_from_string(MEMORY_STORAGE_URI), FixedWindowMemoryStorage)


def test_a_window_counts_until_it_ends(monkeypatch):
    clock = Clock(1000.0)
    monkeypatch.setattr(lunos_limits.time, "time", clock)
    storage = FixedWindowMemoryStorage()
    assert (storage.get("k"), storage.get_expiry("k")) == (0, 1000.0)
    assert storage.incr("k", 60) == 1
    clock.now = 1030.0
    assert storage.incr("k", 60, amount=5) == 6
    assert (storage.get("k"), storage.get_expiry("k")) == (6, 1060.0)  # the first count set the end
    clock.now = 1060.0
    assert storage.get("k") == 0  # ended: dropped when read
    assert storage.incr("k", 60) == 1 and storage.get_expiry("k") == 1120.0
    storage.incr("other", 60)
    storage.clear("k")
    assert storage.get("k") == 0 and storage.check()
    assert storage.reset() == 1 and storage.get("other") == 0


def test_the_fixed_window_strategy_runs_on_it():
    limiter, item = FixedWindowRateLimiter(FixedWindowMemoryStorage()), RateLimitItemPerMinute(2)
    assert limiter.hit(item, "key") and limiter.hit(item, "key") and not limiter.hit(item, "key")
    assert not limiter.test(item, "key") and limiter.test(item, "another")
    assert limiter.get_window_stats(item, "key").remaining == 0


def test_increments_start_no_thread():
    storage = FixedWindowMemoryStorage()
    before = threading.active_count()
    for i in range(200):
        storage.incr(f"key-{i % 3}", 60)
    assert threading.active_count() == before
