"""A fixed-answer OpenAI-compatible upstream for benchmarks: gevent, one process.

Non-streaming requests get a small chat.completion at once; streaming requests get CHUNKS
content chunks, CHUNK_DELAY_S apart, then usage and [DONE]. A streaming request whose body has
``bench_quiet_s`` (bench/run.py --open-streams) gets its first event, then nothing for that
many seconds (not even a comment), then a short answer and [DONE].
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

CHUNKS = 20
CHUNK_DELAY_S = 0.05
USAGE = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fixed answer"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
).encode()


def event(payload):
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream(quiet_s=0):
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
    yield event(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    )
    if quiet_s:
        gevent.sleep(quiet_s)
    for i in range(2 if quiet_s else CHUNKS):
        if not quiet_s:
            gevent.sleep(CHUNK_DELAY_S)
        yield event({**base, "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]})
    yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    yield event({**base, "choices": [], "usage": USAGE})
    yield b"data: [DONE]\n\n"


def app(environ, start_response):
    body = json.loads(environ["wsgi.input"].read() or b"{}")
    if body.get("stream"):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return stream(float(body.get("bench_quiet_s") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def serve(wsgi_app, port):
    """Serve ``wsgi_app`` on 127.0.0.1:``port`` until killed, with as many descriptors as allowed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of open streams
    # TCP_NODELAY on the listener is inherited by accepted sockets: no Nagle/delayed-ACK stalls.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    WSGIServer(listener, wsgi_app, log=None).serve_forever()


if __name__ == "__main__":
    serve(app, int(sys.argv[1]))
