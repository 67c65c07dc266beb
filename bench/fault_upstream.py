"""A scriptable OpenAI-compatible upstream for bench/faults.py: gevent, one process.

The last user message says what to send, as ``key=value`` words:
``chunks=N`` content chunks (default 20), ``delay=S`` seconds apart (default 0.05), then usage
and [DONE]; ``huge=event`` sends, after ``chunks`` chunks, one SSE event of ``mb=`` megabytes
(default 50) before its blank line; ``huge=line`` sends one line of ``mb=`` megabytes (default
100) that never ends, then closes. Usage is always prompt 12, completion ``chunks``.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

PROMPT_TOKENS = 12
MB = 1024 * 1024
BASE = {"id": "chatcmpl-faults", "object": "chat.completion.chunk", "created": 1, "model": "faults"}


def event(payload):
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def directives(body):
    messages = body.get("messages") or [{}]
    words = str(messages[-1].get("content") or "").split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def content(text):
    return event({**BASE, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def stream(chunks, delay, huge, megabytes):
    yield event(
        {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    )
    for i in range(chunks):
        gevent.sleep(delay)
        yield content(f"word{i} ")
    if huge:
        # One event (or one line) far over the gateway's 8 MB cap, a megabyte per write.
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "'
        piece = b"x" * MB
        for _ in range(megabytes):
            yield piece
        if huge == "line":
            return  # no newline ever: the connection just ends
        yield b'"}}]}\n\n'
    yield event({**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks}
    yield event({**BASE, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def app(environ, start_response):
    body = json.loads(environ["wsgi.input"].read() or b"{}")
    said = directives(body)
    chunks, delay = int(said.get("chunks", 20)), float(said.get("delay", 0.05))
    huge = said.get("huge")
    megabytes = int(said.get("mb", 100 if huge == "line" else 50))
    if body.get("stream"):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return stream(chunks, delay, huge, megabytes)
    gevent.sleep(delay)
    answer = json.dumps(
        {
            "id": "chatcmpl-faults",
            "object": "chat.completion",
            "created": 1,
            "model": "faults",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "fixed answer"}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": chunks,
                "total_tokens": PROMPT_TOKENS + chunks,
            },
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]


if __name__ == "__main__":
    from upstream import serve

    serve(app, int(sys.argv[1]))
