"""The production path: gunicorn with gevent workers, started as operators start it."""

import json
import os
import socket
import time

import pytest
import redis
import requests

from tests.conftest import money, reservations, set_plan, usage_events
from tests.upstream import Reply

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def settled_event(app, account):
    """The account's one usage event, once the worker has written it (within 5 s), with the
    account's books balanced and no hold left but the worker's lease."""
    deadline = time.monotonic() + 5
    while not usage_events(app, account) and time.monotonic() < deadline:
        time.sleep(0.05)
    [event] = usage_events(app, account)
    balance, ledger, reserved = money(app, account)
    held = reservations(app, account)
    assert balance == ledger and reserved == sum(held.values())
    assert all(hold.startswith("lease:") for hold in held), held
    return event


def test_stream_keepalive_and_disconnect_under_gevent(start_gunicorn, app, auth, account, upstream):
    base = start_gunicorn()
    upstream.script("primary", Reply(words=tuple(f" w{i}" for i in range(40)), chunk_delay_s=0.15))
    response = requests.post(
        f"{base}/v1/chat/completions",
        headers=auth,
        stream=True,
        timeout=10,
        json={
            "model": "test/primary",
            "stream": True,
            "user": "gunicorn-leaver",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status_code == 200
    received = b""
    for piece in response.iter_content(chunk_size=None):
        received += piece
        if b"w2" in received:
            break
    assert b": keep-alive" in received
    response.close()  # the client goes away mid-stream
    assert upstream.wait_disconnect("gunicorn-leaver"), "the gateway closed its upstream request"
    # ...and billed what was produced, once, releasing the reservation.
    event = settled_event(app, account)
    assert event.status == "client_disconnected" and event.completion_tokens > 0 and event.cost_micros > 0


def test_a_finished_stream_is_settled_by_gunicorns_close(start_gunicorn, app, auth, account, upstream):
    upstream.script("primary", Reply(usage=(30, 10)))
    # Connection: close, or gunicorn's graceful stop would wait for the idle keep-alive connection.
    response = requests.post(
        f"{start_gunicorn()}/v1/chat/completions",
        headers={**auth, "Connection": "close"},
        timeout=10,
        json={"model": "test/primary", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.text.endswith("data: [DONE]\n\n")
    event = settled_event(app, account)  # settled just after the last byte, by the WSGI close
    assert (event.status, event.prompt_tokens, event.completion_tokens) == ("ok", 30, 10)


def test_non_streaming_under_gevent(start_gunicorn, auth):
    answer = requests.post(
        f"{start_gunicorn()}/v1/chat/completions",
        headers=auth,
        timeout=10,
        json={"model": "test/primary", "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert answer["choices"][0]["message"]["content"] == "Hello from upstream"


def redis_without_limits(what):
    """The test Redis (its URL and a client) with no key's rate-limit counts in it."""
    url = os.environ.get("LUNOS_TEST_REDIS_URL")
    if not url:
        pytest.skip(f"{what} skipped: LUNOS_TEST_REDIS_URL is not set")
    store = redis.Redis.from_url(url)
    for key in store.scan_iter("LIMITS:*lunos-key:*"):
        store.delete(key)
    return url, store


def test_two_instances_of_two_workers_share_one_limit_on_redis(start_gunicorn, app, auth, account):
    url, store = redis_without_limits("shared rate limit")
    set_plan(app, account, "echo-only")  # 3 requests a minute
    instances = [start_gunicorn(workers=2, LUNOS_REDIS_URL=url) for _ in range(2)]
    codes = []
    for i in range(12):
        # A new connection each time: the kernel spreads them over both workers of each instance.
        response = requests.post(
            f"{instances[i % 2]}/v1/chat/completions",
            headers={**auth, "Connection": "close"},
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        codes.append(response.status_code)
    assert codes.count(200) == 3 and codes.count(429) == 9, codes


def test_tokens_reach_redis_with_the_next_admission_or_soon_after(start_gunicorn, app, auth, account):
    """Under gevent on Redis a worker sends a key's counted tokens with its next admission, or
    on their own shortly after: once the requests are done, the token window holds every
    token billed, on both workers, and none twice."""
    url, store = redis_without_limits("token counting on Redis")
    base = start_gunicorn(workers=2, LUNOS_REDIS_URL=url)
    with requests.Session() as kept_alive:  # one connection: every admission after the first folds
        for _ in range(6):
            assert kept_alive.post(f"{base}/v1/chat/completions", headers=auth, json=CHAT, timeout=10).ok
    for _ in range(6):  # new connections: spread over both workers
        response = requests.post(
            f"{base}/v1/chat/completions", headers={**auth, "Connection": "close"}, json=CHAT, timeout=10
        )
        assert response.ok

    def counted():
        return sum(int(store.get(key)) for key in store.scan_iter("LIMITS:LIMITER/tokens/lunos-key:*"))

    deadline = time.monotonic() + 10
    while len(usage_events(app, account)) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    billed = sum(e.prompt_tokens + e.completion_tokens for e in usage_events(app, account))
    while counted() < billed and time.monotonic() < deadline:  # sent within FOLD_S of the answer
        time.sleep(0.05)
    time.sleep(0.3)  # and nothing more arrives: none counted twice
    assert billed > 0 and counted() == billed


def test_an_oversized_chunked_body_is_413_under_gunicorn(start_gunicorn, auth):
    from tests.api.test_bad_input import chunked_post

    port = int(start_gunicorn(LUNOS_MAX_BODY_BYTES="1000").rsplit(":", 1)[1])
    big = b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    status, answer = chunked_post(port, "/v1/chat/completions", auth, big)
    assert status == 413 and answer["error"]["type"] == "invalid_request_error"
    fits = b'{"messages": [{"role": "user", "content": "' + b"x" * 900 + b'"}]}'
    assert chunked_post(port, "/v1/chat/completions", auth, fits)[0] == 200


def raw_exchange(port, request: bytes):
    """Send ``request`` over a raw socket, half-close, read the answer: (status, content type, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, body = answer.split(b"\r\n\r\n", 1)
    content_type = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type")
        ),
        None,
    )
    return int(head.split(b" ", 2)[1]), content_type, body


def test_what_gunicorn_refuses_before_the_app_is_answered_in_openais_shape(start_gunicorn, auth):
    port = int(start_gunicorn().rsplit(":", 1)[1])
    secret = auth["Authorization"]
    post = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: {secret}\r\n"
        "Content-Type: application/json\r\n"
    )
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    cases = {
        "a request line too long": (f"GET /v1/models?{'x' * 5000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 414),
        "a header too large": (f"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {'y' * 9000}\r\n\r\n".encode(), 431),
        "a bad Content-Length": ((post + "Content-Length: abc\r\n\r\n").encode() + body, 400),
        "a broken chunk size": ((post + "Transfer-Encoding: chunked\r\n\r\nZZ\r\n").encode() + body, 400),
        "a body cut short": ((post + "Content-Length: 100\r\n\r\n").encode() + body[:45], 400),
    }
    for case, (request, expected) in cases.items():
        status, content_type, answer = raw_exchange(port, request)
        assert (status, content_type) == (expected, "application/json"), (case, status, answer[:300])
        error = json.loads(answer)["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error", case
