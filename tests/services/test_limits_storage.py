"""The per-process rate-limit storage: limits' public Storage interface, a fixed window per key,
and no timer or thread per increment; and the tokens an admission carries to Redis."""

import threading

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from lunos.services import limits as lunos_limits
from lunos.services.limits import MEMORY_STORAGE_URI, FixedWindowMemoryStorage
from tests.conftest import run_under_gevent


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


def test_tokens_carried_by_an_admission_cut_short_are_kept(tmp_path):
    """A worker that stops (GreenletExit) while an admission waits for Redis keeps the tokens
    of earlier requests that admission carried: they go with the next trip."""
    run_under_gevent(
        f"""
from gevent import monkey; monkey.patch_all()
import socket, gevent
from lunos import create_app
from lunos.services import limits

redis_that_never_answers, held = socket.create_server(("127.0.0.1", 0)), []
gevent.spawn(lambda: [held.append(redis_that_never_answers.accept()) for _ in range(100)])
app = create_app({{
    "DATABASE_URL": "sqlite:///{tmp_path}/limits.db",
    "REDIS_URL": "redis://127.0.0.1:%d/0" % redis_that_never_answers.getsockname()[1],
    "SECRET_KEY": "test",
}})

def admit():
    with app.app_context():
        limits.admit(7, limits.Quota(requests_per_minute=10, tokens_per_minute=1000))

with app.app_context():
    storage = limits.limiter.storage
    limits._unsent(storage)[7] = 42
    admission = gevent.spawn(admit)
    gevent.sleep(0.5)
    assert held and not admission.dead, "the admission should be waiting for its answer"
    admission.kill()
    assert limits._unsent(storage) == {{7: 42}}, limits._unsent(storage)
"""
    )
