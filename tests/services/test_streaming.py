"""with_keepalive: items as they come, a keep-alive per quiet interval, the end and errors last."""
import threading
import time

import pytest

from lunos.services.streaming import KEEPALIVE, with_keepalive


def paced(*steps):
    """Yield the steps' items; a number is a pause in seconds, an exception is raised."""
    for step in steps:
        if isinstance(step, (int, float)):
            time.sleep(step)
        elif isinstance(step, Exception):
            raise step
        else:
            yield step


def test_keepalives_fill_silences_only():
    out = list(with_keepalive(paced("a", 0.35, "b", "c"), 0.1))
    items = [item for batch in out if batch is not KEEPALIVE for item in batch]
    assert items == ["a", "b", "c"]
    quiet = out.index(["b", "c"]) if ["b", "c"] in out else out.index(["b"])
    assert 2 <= out[:quiet].count(KEEPALIVE) <= 4, out  # one per 0.1 s of the 0.35 s silence


def test_a_quick_stream_gets_no_keepalive():
    assert list(with_keepalive(paced("a", "b"), 0.2)) in ([["a", "b"]], [["a"], ["b"]])


def test_the_error_comes_after_the_items_read_before_it():
    received = []
    with pytest.raises(ConnectionError):
        for batch in with_keepalive(paced("a", 0.05, ConnectionError("reset")), 1.0):
            received.append(batch)
    assert received == [["a"]]


def test_the_quiet_watch_ends_with_the_consumer():
    before = threading.active_count()
    stream = with_keepalive(paced("a", 5), 30.0)
    assert next(stream) == ["a"]
    stream.close()  # the client went away: nothing must wait out the 30 s interval
    deadline = time.monotonic() + 2
    while threading.active_count() > before + 1 and time.monotonic() < deadline:  # + the pump, still asleep
        time.sleep(0.01)
    assert threading.active_count() <= before + 1
