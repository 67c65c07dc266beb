"""Server-Sent Events framing, and keep-alives while an upstream is silent."""
import queue
import threading

import orjson

KEEPALIVE = object()
_ITEM, _END, _ERROR = range(3)


def sse_event(payload):
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
SSE_DONE = b"data: [DONE]\n\n"


def with_keepalive(iterable, interval_s):
    """Yield the items of ``iterable``, and KEEPALIVE whenever none came for ``interval_s``.

    A pump thread (a greenlet under gevent) reads the upstream so this generator can wake on a
    timer. Closing the upstream transport ends the pump; errors are re-raised here.
    """
    inbox = queue.SimpleQueue()

    def pump():
        try:
            for item in iterable:
                inbox.put((_ITEM, item))
            inbox.put((_END, None))
        except BaseException as exc:  # handed over to the consumer, which decides
            inbox.put((_ERROR, exc))

    threading.Thread(target=pump, daemon=True, name="lunos-stream-pump").start()
    while True:
        try:
            kind, value = inbox.get_nowait()  # the common case under load; no timer needed
        except queue.Empty:
            try:
                kind, value = inbox.get(timeout=interval_s)
            except queue.Empty:
                yield KEEPALIVE
                continue
        if kind == _END:
            return
        if kind == _ERROR:
            raise value
        yield value
