"""Group commit: callers who arrive while a batch runs share the next one, and each gets its own outcome."""

import threading

import pytest

from lunos.services.batching import GroupCommit
from tests.conftest import run_under_gevent


class Recorder:
    """A run_batch that records its batches and can hold the first one until released."""

    def __init__(self, hold_first=False):
        self.batches = []
        self.running = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items):
        self.batches.append(list(items))
        self.running.set()
        self.release.wait(10)
        return [ValueError(f"bad {item}") if item == "bad" else item * 2 for item in items]


def submit_all(group, items):
    results, threads = {}, []

    def call(item):
        try:
            results[item] = group.submit(item)
        except Exception as exc:  # noqa: BLE001
            results[item] = exc

    for item in items:
        thread = threading.Thread(target=call, args=(item,))
        thread.start()
        threads.append(thread)
    return results, threads


def wait_queued(group, count):
    for _ in range(1000):
        if len(group._pending) >= count:
            return
        threading.Event().wait(0.005)
    raise AssertionError("callers did not queue")


def test_a_lone_caller_runs_a_batch_of_one():
    recorder = Recorder()
    group = GroupCommit(recorder)
    assert group.submit(3) == 6
    assert group.submit(4) == 8
    assert recorder.batches == [[3], [4]]


def test_callers_arriving_during_a_batch_share_the_next_one():
    recorder = Recorder(hold_first=True)
    group = GroupCommit(recorder)
    first, first_threads = submit_all(group, [1])
    assert recorder.running.wait(5)
    later, later_threads = submit_all(group, [2, 3, 4, 5])
    wait_queued(group, 4)
    recorder.release.set()
    for thread in first_threads + later_threads:
        thread.join(10)
    assert first == {1: 2} and later == {2: 4, 3: 6, 4: 8, 5: 10}
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4, 5], "the four waiting callers share one batch"
    assert len(recorder.batches) == 2


def test_each_caller_gets_its_own_failure():
    recorder = Recorder(hold_first=True)
    group = GroupCommit(recorder)
    first, threads = submit_all(group, [1])
    assert recorder.running.wait(5)
    more, more_threads = submit_all(group, [2, "bad", 4])
    wait_queued(group, 3)
    recorder.release.set()
    for thread in threads + more_threads:
        thread.join(10)
    assert more[2] == 4 and more[4] == 8
    assert isinstance(more["bad"], ValueError) and str(more["bad"]) == "bad bad"


def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs():
    calls = []

    def run_batch(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database down")
        return items

    group = GroupCommit(run_batch)
    with pytest.raises(RuntimeError, match="database down"):
        group.submit("a")
    assert group.submit("b") == "b", "leadership was handed back after the failure"


LEADER_STOPPED = r"""
from gevent import monkey
monkey.patch_all()
import gevent
from lunos.services.batching import GroupCommit

batches = []
group = GroupCommit(lambda items: batches.append(list(items)) or [item * 2 for item in items])
leader = gevent.spawn(group.submit, 1)
followers = [gevent.spawn(group.submit, n) for n in (2, 3)]
# From the hub, once all three have queued and before the leader's yield ends: stop it there,
# as a worker that stops kills its greenlets.
gevent.get_hub().loop.run_callback(lambda: leader.throw(gevent.GreenletExit))
gevent.joinall(followers, timeout=5)
assert leader.dead and batches == [[2, 3]], batches
assert [follower.value for follower in followers] == [4, 6]
"""


FOLLOWER_STOPPED = r"""
from gevent import monkey
monkey.patch_all()
import gevent
from gevent.event import Event
from lunos.services.batching import GroupCommit

release, batches = Event(), []

def run_batch(items):
    batches.append(list(items))
    release.wait(5)
    return [item * 2 for item in items]

group = GroupCommit(run_batch)
leader = gevent.spawn(group.submit, 1)
gevent.sleep(0.05)  # its batch runs, held
followers = [gevent.spawn(group.submit, n) for n in (2, 3)]
gevent.sleep(0.05)  # both wait for the next batch, 2 first in line to lead it
followers[0].kill()
release.set()
gevent.joinall([leader, followers[1]], timeout=5)
assert (leader.value, followers[1].value) == (2, 6), (leader.value, followers[1].value)
assert batches == [[1], [3]], batches
"""


HANDED_THE_LEAD_AND_STOPPED = r"""
from gevent import monkey
monkey.patch_all()
import gevent
from lunos.services.batching import GroupCommit

batches, followers = [], []

def run_batch(items):
    batches.append(list(items))
    if len(batches) == 1:
        gevent.sleep(0.1)  # 2 and 3 queue for the next batch meanwhile
        # Stop 2 as it is handed the lead, before it can take it.
        gevent.get_hub().loop.run_callback(lambda: followers[0].throw(gevent.GreenletExit))
    return [item * 2 for item in items]

group = GroupCommit(run_batch)
leader = gevent.spawn(group.submit, 1)
gevent.sleep(0.02)
followers += [gevent.spawn(group.submit, n) for n in (2, 3)]
gevent.joinall([leader, followers[1]], timeout=5)
assert followers[0].dead and isinstance(followers[0].value, gevent.GreenletExit), followers[0].value
assert (leader.value, followers[1].value) == (2, 6), (leader.value, followers[1].value)
assert batches == [[1], [3]], batches
"""


def test_a_caller_handed_the_lead_as_it_is_stopped_hands_it_on():
    run_under_gevent(HANDED_THE_LEAD_AND_STOPPED)


def test_a_caller_stopped_while_it_waits_leaves_the_queue():
    """A caller whose greenlet is killed while it waits for the next batch neither holds up the
    callers behind it (it was first in line to lead) nor has its item run."""
    run_under_gevent(FOLLOWER_STOPPED)


def test_a_leader_stopped_before_it_took_the_batch_hands_it_on():
    """Under gevent the leader yields before it takes the batch; stopped there, the callers
    queued behind it still run, in the next batch, instead of waiting for ever."""
    run_under_gevent(LEADER_STOPPED)
