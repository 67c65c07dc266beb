"""The development server (``python app.py``): it serves, and Ctrl-C or a SIGTERM stops it
cleanly, with what it settled written and its lease given back."""

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from lunos.in_flight import InFlight
from tests.conftest import ROOT, free_port, reservations, usage_events
from tests.upstream import Reply


@contextlib.contextmanager
def development_server(server_env, **extra_env):
    """(process, base URL) of ``python app.py`` on this test's database, once it is ready; the
    process is killed on the way out if it is still running."""
    port = free_port()
    env = {**server_env, "LUNOS_PORT": str(port), "LUNOS_AUTO_MIGRATE": "false", **extra_env}
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
    try:
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    raise AssertionError(server.communicate(timeout=5)) from None
                time.sleep(0.1)
        yield server, base
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_development_server_stops_cleanly(app, server_env, auth, account, signum):
    with development_server(server_env) as (server, base):
        body = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            assert requests.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=10).ok
        server.send_signal(signum)  # at once: the last settlements may still be running
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len(usage_events(app, account)) == 3, "what it answered is settled"
    assert reservations(app, account) == {}, "its lease was given back"


def test_the_development_server_finishes_what_it_is_answering_before_it_stops(app, server_env, auth, account, upstream):
    """A stop lets the answers under way finish, streamed or not, settles them and gives the
    lease back; a connection kept alive with nothing asked does not hold the stop up."""
    upstream.script("primary", Reply(wait_s=1.5, words=("late", " but", " whole")))
    upstream.script("backup", Reply(chunk_delay_s=0.3, words=tuple(f"w{i} " for i in range(6))))
    with development_server(server_env) as (server, base):
        with requests.Session() as idle:  # a connection kept alive, asking nothing more
            assert idle.get(f"{base}/readyz", timeout=5).ok
            answers = {}

            def ask(model, stream):
                body = {"model": f"test/{model}", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                response = requests.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=20)
                answers[model] = (response.status_code, response.text)

            askers = [threading.Thread(target=ask, args=args) for args in (("primary", False), ("backup", True))]
            for asker in askers:
                asker.start()
            deadline = time.monotonic() + 10
            while len(upstream.seen) < 2:
                assert time.monotonic() < deadline, "both requests reached the upstream"
                time.sleep(0.02)
            server.send_signal(signal.SIGTERM)
            for asker in askers:
                asker.join(timeout=20)
            out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    status, text = answers["primary"]
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] == "late but whole"
    status, text = answers["backup"]
    assert status == 200 and "w5" in text and text.endswith("data: [DONE]\n\n"), text
    events = usage_events(app, account)
    assert sorted(event.status for event in events) == ["ok", "ok"], [event.status for event in events]
    assert reservations(app, account) == {}, "its lease was given back"


def test_a_stream_still_running_after_the_graceful_timeout_is_cut_short_and_billed(
    app, server_env, auth, account, upstream
):
    upstream.script("backup", Reply(chunk_delay_s=0.5, words=tuple(f"w{i} " for i in range(40))))
    with development_server(server_env, LUNOS_GRACEFUL_TIMEOUT_S="1") as (server, base):
        body = {"model": "test/backup", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with requests.post(f"{base}/v1/chat/completions", json=body, headers=auth, stream=True, timeout=20) as answer:
            lines = answer.iter_lines()
            while b"w1" not in next(lines):
                pass
            server.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                for _ in lines:
                    pass
        out, err = server.communicate(timeout=20)
        assert time.monotonic() - started < 10, "the stop did not wait for the whole stream"
    assert server.returncode == 0, err
    assert "cut short" in out
    [event] = usage_events(app, account)
    assert event.status == "interrupted" and event.completion_tokens > 0 and event.cost_micros > 0
    assert reservations(app, account) == {}, "its lease was given back"


def test_an_answer_whose_close_fails_is_still_counted_done():
    class Body:
        def __iter__(self):
            return iter([b"x"])

        def close(self):
            raise RuntimeError("close failed")

    in_flight = InFlight(lambda environ, start_response: Body())
    body = in_flight({}, lambda *args: None)
    assert in_flight.count == 1
    with pytest.raises(RuntimeError):
        body.close()
    assert in_flight.count == 0 and in_flight.wait_idle(0), "a stop would wait for it forever"
