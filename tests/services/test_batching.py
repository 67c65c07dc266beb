"""Group commit: callers who arrive while a batch runs share the next one, and each gets its own outcome."""

import threading

import pytest

from lunos.services.batching import GroupCommit


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
