"""Work left to run in the background, and the wait for it at shutdown (under gevent)."""

from tests.conftest import run_under_gevent

LEFT_BEHIND = r"""
from gevent import monkey
monkey.patch_all()
import gevent
from lunos import background

done = []

def count_tokens():  # as a settlement's token count: sent a moment after it
    gevent.sleep(0.1)
    done.append("tokens")

def settle():
    gevent.sleep(0.1)
    done.append("settled")
    background.background(count_tokens)

background.background(settle)
background.drain(5)
assert done == ["settled", "tokens"], done
"""


def test_drain_waits_for_work_that_finishing_work_leaves_behind():
    run_under_gevent(LEFT_BEHIND)
