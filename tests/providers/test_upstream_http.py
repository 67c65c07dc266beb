"""What the pooled upstream client puts on the wire: the request, its headers, the proxy it goes through."""

import base64
import json
from http.server import BaseHTTPRequestHandler

import pytest

from lunos.providers.base import ProviderError
from lunos.providers.http import USER_AGENT, UpstreamHTTP, read_json
from tests.fake_http import LoopbackServer, send_json


class Recorder(BaseHTTPRequestHandler):
    """Notes each request's line, headers and body; answers {"ok": true}."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.fake.seen.append((self.requestline, dict(self.headers), json.loads(body)))
        send_json(self, 200, {"ok": True})

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    server = LoopbackServer(Recorder)
    server.seen = []
    yield server
    server.close()


def test_the_request_carries_the_body_and_headers(recorder):
    http = UpstreamHTTP(4, 5)
    for n in (1, 2):  # the second request reuses what the first worked out about the URL
        answer = read_json(
            http.post_json(
                f"{recorder.url}/v1/chat/completions",
                {"n": n, "text": "é"},
                headers={"Authorization": "Bearer sk-up", "X-Extra": "1"},
                timeout_s=5,
            )
        )
        assert answer == {"ok": True}
    line, headers, body = recorder.seen[1]
    assert line == "POST /v1/chat/completions HTTP/1.1"
    assert body == {"n": 2, "text": "é"}
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Authorization"] == "Bearer sk-up"
    assert headers["X-Extra"] == "1"
    assert int(headers["Content-Length"]) == len(
        json.dumps({"n": 2, "text": "é"}, ensure_ascii=False, separators=(",", ":")).encode()
    )


def test_the_environment_proxy_is_used(recorder, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    response = UpstreamHTTP(4, 5).post_json("http://upstream.invalid/v1/chat/completions", {}, headers={}, timeout_s=5)
    assert read_json(response) == {"ok": True}
    line, headers, _ = recorder.seen[0]
    assert line == "POST http://upstream.invalid/v1/chat/completions HTTP/1.1"  # the proxy's form
    assert headers["Host"] == "upstream.invalid"


def test_a_header_that_would_split_the_request_is_refused(recorder):
    with pytest.raises(ProviderError, match="connection failed"):
        UpstreamHTTP(4, 5).post_json(
            f"{recorder.url}/v1", {}, headers={"Authorization": "Bearer a\r\nX: b"}, timeout_s=5
        )
    assert recorder.seen == []


def test_credentials_in_the_url_become_basic_auth(recorder):
    url = recorder.url.replace("http://", "http://lunos:s%40cret@") + "/v1/chat/completions"
    assert read_json(UpstreamHTTP(4, 5).post_json(url, {}, headers={}, timeout_s=5)) == {"ok": True}
    line, headers, _ = recorder.seen[0]
    assert line == "POST /v1/chat/completions HTTP/1.1"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"lunos:s@cret").decode()
