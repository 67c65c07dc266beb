"""One model served by three endpoints: traffic spreads by weight, a retryable failure moves to
another endpoint of the same model, and an endpoint that keeps failing is skipped once its
breaker opens, until its cooldown, then tried once (per worker, and across workers on Redis)."""

import os
import time
from collections import Counter

import pytest
import redis
import requests

from tests.api.test_chat import chat
from tests.conftest import usage_events
from tests.routing.conftest import sent_to
from tests.upstream import Reply

HI = [{"role": "user", "content": "hi"}]


def test_a_failing_endpoint_fails_over_to_another_of_the_same_model(app, routing_client, auth, account, fakes):
    response = chat(routing_client, auth, model="multi/llama")  # "down" (weight 1000) is nearly always first
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["model"] == "multi/llama" and answer["provider"] in ("alpha", "beta")
    [event] = usage_events(app, account)
    assert [a["provider"] for a in event.attempts][-1] == answer["provider"]
    if fakes["down"].connections:
        assert event.attempts[0]["provider"] == "down" and "connection failed" in event.attempts[0]["error"]


def test_the_breaker_opens_after_five_failures_then_one_trial_after_the_cooldown(routing_client, auth, fakes):
    for _ in range(12):
        assert chat(routing_client, auth, model="multi/llama").status_code == 200
    # Tried while it failed, five times in a row at most; then set aside (the weights make it first).
    assert fakes["down"].connections == 5
    endpoints = routing_client.get("/v1/models/multi/llama/endpoints", headers=auth).get_json()["data"]
    assert {e["provider"]: e["breaker"]["state"] for e in endpoints} == {
        "alpha": "closed",
        "beta": "closed",
        "down": "open",
    }
    time.sleep(1.1)  # the provider's cooldown_s
    for _ in range(5):
        assert chat(routing_client, auth, model="multi/llama").status_code == 200
    assert fakes["down"].connections == 6, "one trial request after the cooldown, which failed: open again"
    providers = {p["id"]: p for p in routing_client.get("/v1/providers", headers=auth).get_json()["data"]}
    assert providers["down"]["health"] == {"closed": 0, "half_open": 0, "open": 1}
    assert "base_url" not in providers["down"] and providers["alpha"]["kind"] == "openai"


def test_a_trial_that_succeeds_closes_the_breaker(routing_app, routing_client, auth, fakes):
    health = routing_app.extensions["lunos"].health
    for _ in range(5):
        health.failed("beta/llama-b")
    assert health.summary("beta/llama-b")["state"] == "open"
    health.health("beta/llama-b").open_until = time.time() - 1  # its cooldown is over
    for _ in range(20):
        chat(routing_client, auth, model="multi/llama", provider={"order": ["beta"]})
    assert health.summary("beta/llama-b")["state"] == "closed"
    assert len(sent_to(fakes["beta"], "llama-b")) == 20


def test_when_every_endpoint_is_open_they_are_tried_anyway(routing_app, routing_client, auth, fakes):
    health = routing_app.extensions["lunos"].health
    for key in ("alpha/llama-a", "beta/llama-b", "down/llama-down"):
        for _ in range(5):
            health.failed(key)
    response = chat(routing_client, auth, model="multi/llama")
    assert response.status_code == 200, "health alone never refuses a request"


def test_traffic_spreads_by_weight(routing_client, auth, fakes):
    counts = Counter()
    for _ in range(40):
        counts[
            chat(routing_client, auth, model="multi/llama", provider={"ignore": ["down"]}).get_json()["provider"]
        ] += 1
    assert counts["alpha"] > 5 and counts["beta"] > 5, counts  # equal weights


def test_a_breaker_opened_by_one_worker_is_open_for_another_on_redis(
    start_gunicorn, routing_catalog, auth, fakes, tmp_path
):
    url = os.environ.get("LUNOS_TEST_REDIS_URL")
    if not url:
        pytest.skip("shared endpoint health skipped: LUNOS_TEST_REDIS_URL is not set")
    store = redis.Redis.from_url(url)
    for key in store.scan_iter("lunos:health:*"):
        store.delete(key)
    catalog = tmp_path / "catalog.toml"  # a cooldown that outlasts the test
    catalog.write_text(open(routing_catalog).read().replace("cooldown_s = 1\n", "cooldown_s = 60\n"))
    first, second = (start_gunicorn(workers=1, LUNOS_REDIS_URL=url, LUNOS_CATALOG=str(catalog)) for _ in range(2))
    body = {"model": "multi/llama", "messages": HI}
    for _ in range(8):
        assert requests.post(f"{first}/v1/chat/completions", json=body, headers=auth, timeout=10).status_code == 200
    assert fakes["down"].connections == 5
    time.sleep(1.2)  # the second worker's copy of the board is at most a second old
    for _ in range(8):
        assert requests.post(f"{second}/v1/chat/completions", json=body, headers=auth, timeout=10).status_code == 200
    assert fakes["down"].connections == 5, "the second worker skips the endpoint the first one opened"
    endpoints = requests.get(f"{second}/v1/models/multi/llama/endpoints", headers=auth, timeout=10).json()["data"]
    assert {e["provider"]: e["breaker"]["state"] for e in endpoints}["down"] == "open"


def test_a_retryable_failure_tries_the_other_endpoint_before_the_fallback_model(
    routing_client, auth, fakes, app, account
):
    fakes["alpha"].script("llama-a", Reply(status=503, message="busy"))
    response = chat(
        routing_client,
        auth,
        model="multi/llama",
        fallback_model="multi/priced",
        provider={"ignore": ["down"], "order": ["alpha"]},
    )
    assert response.get_json()["model"] == "multi/llama" and response.get_json()["provider"] == "beta"
    assert sent_to(fakes["beta"], "priced-b") == [] and sent_to(fakes["alpha"], "priced-a") == []
    [event] = usage_events(app, account)
    assert [(a["provider"], a["status"]) for a in event.attempts if not a["skipped"]] == [("alpha", 503), ("beta", 200)]
