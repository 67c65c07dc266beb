"""Work a request leaves behind it (counting its tokens, a settlement after the last byte):
under gevent, a greenlet of its own that nobody waits for, and that a graceful shutdown waits
for (``drain``); without gevent (tests, the CLI), done at once, so it is done when the caller
goes on."""

import logging
import time
from collections.abc import Callable

import gevent
from gevent import monkey

log = logging.getLogger(__name__)
_running: set = set()  # greenlets not finished yet, for ``drain`` at shutdown (per process, like the hub)


def background(fn: Callable, *args) -> None:
    if not monkey.is_module_patched("threading"):
        fn(*args)
        return
    greenlet = gevent.spawn(_logged, fn, *args)
    _running.add(greenlet)
    greenlet.link(_running.discard)


def _logged(fn, *args):
    try:
        fn(*args)
    except Exception:
        log.exception("background work failed")


def drain(timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) for what was left to run in the background, then stop what
    still runs: a settlement stopped so keeps its record in the spool (services/metering.py)."""
    deadline = time.monotonic() + timeout_s
    # Until none is left: work finishing now may leave more behind it (a settlement counts its
    # tokens, which a greenlet of its own sends a moment later).
    while _running and time.monotonic() < deadline:
        gevent.joinall(list(_running), timeout=deadline - time.monotonic())
    if _running:
        log.warning("stopping %d background tasks still running at shutdown", len(_running))
        gevent.killall(list(_running), timeout=1)
