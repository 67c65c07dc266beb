"""Server-Sent Events framing."""
import orjson


def sse_event(payload):
    return b"data: " + orjson.dumps(payload) + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"  # sent for each quiet interval of the upstream
SSE_DONE = b"data: [DONE]\n\n"
