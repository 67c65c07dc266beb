"""The development server (``python app.py``): it serves, and Ctrl-C or a SIGTERM stops it
cleanly, with what it settled written and its lease given back."""

import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT, free_port, reservations, usage_events


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_development_server_stops_cleanly(app, server_env, auth, account, signum):
    port = free_port()
    env = {**server_env, "LUNOS_PORT": str(port), "LUNOS_AUTO_MIGRATE": "false"}
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
                assert time.monotonic() < deadline and server.poll() is None, server.communicate(timeout=5)
                time.sleep(0.1)
        body = {"model": "test/echo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(3):
            assert requests.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=10).ok
        server.send_signal(signum)  # at once: the last settlements may still be running
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len(usage_events(app, account)) == 3, "what it answered is settled"
    assert reservations(app, account) == {}, "its lease was given back"
