"""Server-Sent Events framing."""

from lunos.jsonio import dumps


def sse_event(payload: dict) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"  # sent for each quiet interval of the upstream
SSE_DONE = b"data: [DONE]\n\n"
