"""Server-Sent Events framing, and keep-alives while an upstream is silent."""
import queue
import threading
import time

import gevent
import orjson
from gevent import monkey

KEEPALIVE = object()
_ITEM, _END, _ERROR, _QUIET = range(4)


def sse_event(payload):
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
SSE_DONE = b"data: [DONE]\n\n"


def start_background(target):
    """Run ``target`` beside the caller: a bare greenlet under gevent (a patched
    ``threading.Thread`` costs several locks and a registry entry, per stream), a thread otherwise."""
    if monkey.is_module_patched("threading"):
        gevent.spawn_raw(target)
    else:
        threading.Thread(target=target, daemon=True, name="lunos-stream-pump").start()


def with_keepalive(iterable, interval_s):
    """Yield lists of the items of ``iterable`` as they come, or KEEPALIVE when none came for
    ``interval_s``.

    A pump thread (a greenlet under gevent) reads the upstream; a second one wakes once per
    quiet interval to ask for a keep-alive. Waiting for the next item with a timeout instead
    would cost a timer per item, a sixth of relaying one. Items that queued up while the
    consumer was busy come out together, so a busy server writes them to the client at once.
    Closing the upstream transport ends the pump; its error is re-raised here, after the items
    read before it.
    """
    inbox = queue.SimpleQueue()
    ended = threading.Event()
    last_item_at = [time.monotonic()]

    def pump():
        try:
            for item in iterable:
                last_item_at[0] = time.monotonic()
                inbox.put((_ITEM, item))
            inbox.put((_END, None))
        except BaseException as exc:  # handed over to the consumer, which decides
            inbox.put((_ERROR, exc))

    def watch():
        while not ended.wait(max(0.0, last_item_at[0] + interval_s - time.monotonic())):
            if time.monotonic() - last_item_at[0] >= interval_s:
                last_item_at[0] = time.monotonic()
                inbox.put((_QUIET, None))

    start_background(pump)
    start_background(watch)
    try:
        while True:
            messages = [inbox.get()]
            while not inbox.empty():
                messages.append(inbox.get_nowait())
            items = [value for kind, value in messages if kind == _ITEM]
            if items:
                yield items
            for kind, value in messages:  # the end may come before a last quiet tick
                if kind == _END:
                    return
                if kind == _ERROR:
                    raise value
            if not items:
                yield KEEPALIVE
    finally:
        ended.set()
