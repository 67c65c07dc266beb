"""The floor of Lunos's stack: the same gunicorn settings, Flask and requests, and no Lunos code.

    LUNOS_STACK_FLOOR_UPSTREAM=http://127.0.0.1:PORT/v1/chat/completions \
        gunicorn -c gunicorn.conf.py --pythonpath bench stack_floor:app

Each request's body goes to the upstream through one pooled requests.Session, and the answer
comes back unread: a JSON body whole, a stream chunk by chunk as it arrives. No key, no
validation, no metering, no SSE parsing. bench/run.py --floor measures it beside the gateway:
what the chosen stack costs before Lunos does anything.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

import requests  # noqa: E402
from flask import Flask, Response, request  # noqa: E402

UPSTREAM = os.environ["LUNOS_STACK_FLOOR_UPSTREAM"]
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=2000))
app = Flask(__name__)


@app.post("/v1/chat/completions")
def relay():
    upstream = session.post(
        UPSTREAM, data=request.get_data(), stream=True, headers={"Content-Type": "application/json"}
    )
    if upstream.headers.get("Transfer-Encoding") != "chunked":
        return Response(upstream.content, upstream.status_code, content_type="application/json")

    def chunks():
        try:
            yield from upstream.raw.read_chunked(decode_content=False)
        finally:
            upstream.close()

    return Response(chunks(), upstream.status_code, content_type="text/event-stream")
