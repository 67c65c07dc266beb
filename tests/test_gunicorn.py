"""The production path: gunicorn with a gevent worker, started as operators start it."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.upstream import Reply

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(app, database_url, catalog_path, plans_path):
    port = free_port()
    env = {**os.environ, "LUNOS_DATABASE_URL": database_url, "LUNOS_CATALOG": catalog_path, "LUNOS_PLANS": plans_path,
           "LUNOS_SECRET_KEY": app.config["SECRET_KEY"], "LUNOS_STREAM_KEEPALIVE_S": "0.1",
           "LUNOS_WORKERS": "1", "LUNOS_BIND": f"127.0.0.1:{port}"}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("gunicorn did not become ready: " + process.communicate()[1].decode()[-2000:])
    yield base
    process.terminate()
    process.wait(timeout=30)


def test_stream_keepalive_and_disconnect_under_gevent(gunicorn, auth, upstream):
    upstream.script("primary", Reply(words=tuple(f" w{i}" for i in range(40)), chunk_delay_s=0.15))
    response = requests.post(f"{gunicorn}/v1/chat/completions", headers=auth, stream=True, timeout=10, json={
        "model": "test/primary", "stream": True, "user": "gunicorn-leaver", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    received = b""
    for piece in response.iter_content(chunk_size=None):
        received += piece
        if b"w2" in received:
            break
    assert b": keep-alive" in received
    response.close()  # the client goes away mid-stream
    assert upstream.wait_disconnect("gunicorn-leaver"), "the gateway closed its upstream request"


def test_non_streaming_under_gevent(gunicorn, auth):
    answer = requests.post(f"{gunicorn}/v1/chat/completions", headers=auth, timeout=10, json={
        "model": "test/primary", "messages": [{"role": "user", "content": "hi"}]}).json()
    assert answer["choices"][0]["message"]["content"] == "Hello from upstream"
