"""Reading a streamed upstream body: framing, quiet intervals, timeouts, reuse, leaving early."""

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from urllib3.exceptions import ProtocolError

from lunos.providers import http as http_module
from lunos.providers.base import QUIET, ProviderError
from lunos.providers.http import MAX_EVENT_BYTES, UpstreamHTTP, iter_blocks, iter_sse
from tests.fake_http import LoopbackServer

SSE = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


class Scripted(BaseHTTPRequestHandler):
    """Answers each request with the server's next script: raw bytes to send, pauses in seconds."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.fake.peers.append(self.client_address)
        for step in self.server.fake.scripts.pop(0):
            if isinstance(step, float):
                time.sleep(step)
            else:
                self.wfile.write(step if isinstance(step, bytes) else step.encode())
                self.wfile.flush()
        if self.server.fake.close_after:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = LoopbackServer(Scripted)
    server.scripts, server.close_after, server.peers = [], False, []
    yield server
    server.close()


def read(http, server, quiet_s=5.0, timeout_s=5.0):
    response = http.post_json(f"{server.url}/v1/chat/completions", {}, headers={}, timeout_s=timeout_s, stream=True)
    try:
        return list(iter_blocks(response, quiet_s, timeout_s))
    finally:
        response.close()


def data(blocks):
    return b"".join(block for block in blocks if block is not QUIET)


def test_chunks_split_anywhere_are_joined_and_the_connection_is_reused(scripted):
    scripted.scripts = [
        [
            SSE + "Transfer-Encoding: chunked\r\n\r\n",
            "5\r\nhel",
            0.02,
            "lo\r",
            0.02,
            "\n1",
            0.02,
            "0;ext=1\r\n",
            "0123456789abcdef\r\n",
            "0\r\n",
            0.02,
            "\r\n",
        ],
        [SSE + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"],
    ]
    http = UpstreamHTTP(4, 5)
    assert data(read(http, scripted)) == b"hello0123456789abcdef"
    assert data(read(http, scripted)) == b"abc"
    assert scripted.peers[0] == scripted.peers[1], "both requests came over one connection"


def test_quiet_intervals_are_reported_and_the_body_goes_on(scripted):
    scripted.scripts = [[SSE + "Transfer-Encoding: chunked\r\n\r\n", "2\r\nab\r\n", 0.35, "2\r\ncd\r\n0\r\n\r\n"]]
    blocks = read(UpstreamHTTP(4, 5), scripted, quiet_s=0.1)
    assert data(blocks) == b"abcd"
    assert 2 <= blocks.count(QUIET) <= 4, blocks  # one per 0.1 s of the 0.35 s silence
    assert blocks.index(QUIET) > blocks.index(b"ab")


def test_silence_longer_than_the_timeout_is_a_timeout(scripted):
    scripted.scripts = [[SSE + "Transfer-Encoding: chunked\r\n\r\n", "2\r\nab\r\n", 1.0, "0\r\n\r\n"]]
    response = UpstreamHTTP(4, 5).post_json(f"{scripted.url}/v1", {}, headers={}, timeout_s=0.3, stream=True)
    seen = []
    with pytest.raises(TimeoutError):
        for block in iter_blocks(response, 0.1, 0.3):
            seen.append(block)
    response.close()
    assert seen[0] == b"ab" and seen.count(QUIET) == 2  # quiet at 0.1 and 0.2 s, the timeout at 0.3 s


def test_a_body_with_a_length_and_one_that_ends_with_the_connection(scripted):
    scripted.scripts = [[SSE + "Content-Length: 6\r\n\r\n", "abc", 0.02, "def"]]
    assert data(read(UpstreamHTTP(4, 5), scripted)) == b"abcdef"
    scripted.scripts, scripted.close_after = [[SSE + "Connection: close\r\n\r\n", "abc", 0.02, "def"]], True
    assert data(read(UpstreamHTTP(4, 5), scripted)) == b"abcdef"


@pytest.mark.parametrize("body", ["5\r\nab", "zz\r\nab\r\n", "2\r\nabXY"])
def test_a_broken_chunked_body_is_an_error(scripted, body):
    scripted.scripts, scripted.close_after = [[SSE + "Transfer-Encoding: chunked\r\n\r\n", body]], True
    with pytest.raises(ProtocolError):
        read(UpstreamHTTP(4, 5), scripted)


def test_a_compressed_body_is_decoded(scripted):
    body = gzip.compress(b"data: {}\n\n" * 3)
    scripted.scripts = [[SSE + f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n", body]]
    assert data(read(UpstreamHTTP(4, 5), scripted)) == b"data: {}\n\n" * 3


def test_a_stream_left_mid_body_stops_its_pump(scripted):
    scripted.scripts, scripted.close_after = (
        [[SSE + "Transfer-Encoding: chunked\r\n\r\n", "2\r\nab\r\n", 2.0, "0\r\n\r\n"]],
        True,
    )
    response = UpstreamHTTP(4, 5).post_json(f"{scripted.url}/v1", {}, headers={}, timeout_s=5, stream=True)
    blocks = iter_blocks(response, 5.0, 5.0)
    assert next(blocks) == b"ab"
    started = time.monotonic()
    blocks.close()  # the client went away: the pump is waiting on the socket
    response.close()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name == "lunos-stream-pump"]


def events(http, server, max_event_bytes=MAX_EVENT_BYTES):
    response = http.post_json(f"{server.url}/v1/chat/completions", {}, headers={}, timeout_s=5, stream=True)
    try:
        return [pair for batch in iter_sse(response, 5.0, 5.0, max_event_bytes) if batch is not QUIET for pair in batch]
    finally:
        response.close()


def test_events_are_read_whatever_the_blocks_they_arrive_in(scripted):
    body = "event: a\r\ndata: one\r\n\r\ndata: two\ndata: lines\n\n: comment\ndata: last\n\n"
    pieces = [body[i : i + 3] for i in range(0, len(body), 3)]
    scripted.scripts = [
        [SSE + f"Content-Length: {len(body)}\r\n\r\n", *[p for piece in pieces for p in (piece, 0.001)]]
    ]
    assert events(UpstreamHTTP(4, 5), scripted) == [("a", b"one"), (None, b"two\nlines"), (None, b"last")]


def test_a_long_event_is_read_whole_and_one_past_the_cap_is_refused(scripted):
    long_line = "x" * 3_000_000
    scripted.scripts = [
        [SSE + "Connection: close\r\n\r\n", f"data: {long_line}\n\n", "data: after\n\n"],
        [SSE + "Connection: close\r\n\r\n", "data: " + "y" * 200_000, 0.05, "y" * 200_000],
    ]
    scripted.close_after = True
    http = UpstreamHTTP(4, 5)
    assert events(http, scripted) == [(None, long_line.encode()), (None, b"after")]
    with pytest.raises(ProviderError, match="an event of more than 300000 bytes"):
        events(http, scripted, max_event_bytes=300_000)  # a line that never ends, growing past it


def test_an_event_past_the_cap_that_arrives_whole_in_one_block_is_refused(monkeypatch):
    # Reads that queued while the reader was busy reach it joined: one block with the event whole.
    whole = b"data: " + b"y" * 400_000 + b"\n\ndata: after\n\n"
    monkeypatch.setattr(http_module, "iter_blocks", lambda response, quiet_s, timeout_s: iter([whole]))
    with pytest.raises(ProviderError, match="an event of more than 300000 bytes"):
        list(iter_sse(None, 5.0, 5.0, 300_000))


def test_a_reader_slower_than_its_upstream_holds_the_pump_back_and_can_leave(scripted):
    body = b"data: " + b"w" * 12_000_000 + b"\n\n"
    scripted.scripts = [[SSE + f"Content-Length: {len(body)}\r\n\r\n", body], [SSE + "Connection: close\r\n\r\n", body]]
    scripted.close_after = True
    http = UpstreamHTTP(4, 5)
    response = http.post_json(f"{scripted.url}/v1", {}, headers={}, timeout_s=5, stream=True)
    blocks = iter_blocks(response, 5.0, 5.0)
    received = [next(blocks)]
    time.sleep(0.3)  # the pump fills its queue and waits for room
    assert response.raw.tell() < 3_000_000, "the pump read no further than its queue holds (and one joined block)"
    received += list(blocks)
    response.close()
    assert b"".join(received) == body, "nothing lost while the pump waited"
    response = http.post_json(f"{scripted.url}/v1", {}, headers={}, timeout_s=5, stream=True)
    blocks = iter_blocks(response, 5.0, 5.0)
    next(blocks)
    time.sleep(0.3)
    started = time.monotonic()
    blocks.close()  # left while the pump waits for room in a full queue
    response.close()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name == "lunos-stream-pump"]


@pytest.fixture
def upstream_of_one_huge_event(scripted, monkeypatch, app):
    """test/primary's provider pointed at a server that streams one event of 9 MB, no newline."""
    scripted.scripts = [[SSE + "Connection: close\r\n\r\n", "data: " + "z" * (MAX_EVENT_BYTES + 1_000_000)]]
    scripted.close_after = True
    provider = app.extensions["lunos"].router.providers["fake"]
    monkeypatch.setattr(provider, "_completions_url", f"{scripted.url}/v1/chat/completions")


def test_a_huge_event_fails_the_attempt_cleanly(client, auth, upstream_of_one_huge_event):
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        buffered=True,
        json={"model": "test/primary", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    )
    # The stream was accepted (its headers went out): the failure is its error event, no [DONE].
    assert response.status_code == 200
    error = json.loads(response.get_data(as_text=True).strip().removeprefix("data: "))["error"]
    assert error["type"] == "upstream_error" and "more than" in error["message"]
