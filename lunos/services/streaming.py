"""Server-Sent Events framing, and keep-alives while an upstream is silent."""
import queue
import threading

import gevent
import orjson
from gevent import monkey

KEEPALIVE = object()
_ITEM, _END, _ERROR = range(3)


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

    A pump thread (a greenlet under gevent) reads the upstream so this generator can wake on a
    timer. Items that queued up while the consumer was busy come out together, so a busy server
    writes them to the client at once. Closing the upstream transport ends the pump; its error
    is re-raised here, after the items read before it.
    """
    inbox = queue.SimpleQueue()

    def pump():
        try:
            for item in iterable:
                inbox.put((_ITEM, item))
            inbox.put((_END, None))
        except BaseException as exc:  # handed over to the consumer, which decides
            inbox.put((_ERROR, exc))

    start_background(pump)
    while True:
        try:
            messages = [inbox.get(timeout=interval_s)]
        except queue.Empty:
            yield KEEPALIVE
            continue
        while not inbox.empty():
            messages.append(inbox.get_nowait())
        items = [value for kind, value in messages if kind == _ITEM]
        if items:
            yield items
        kind, value = messages[-1]
        if kind == _END:
            return
        if kind == _ERROR:
            raise value
