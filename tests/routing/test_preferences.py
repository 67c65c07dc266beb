"""The request's ``provider`` object, model variants, and Azure-style provider settings, against
loopback upstreams: what each one makes Lunos send, and where."""

import pytest

from tests.api.test_chat import chat
from tests.conftest import usage_events
from tests.routing.conftest import sent_to
from tests.upstream import Reply

NO_DOWN = {"ignore": ["down"]}


def provider_of(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()["provider"]


def test_order_tries_its_providers_first(routing_client, auth, fakes):
    for _ in range(5):
        assert (
            provider_of(chat(routing_client, auth, model="multi/llama", provider={"order": ["beta", "alpha"]}))
            == "beta"
        )
    assert sent_to(fakes["alpha"], "llama-a") == []


def test_only_and_ignore(routing_client, auth):
    assert {
        provider_of(chat(routing_client, auth, model="multi/llama", provider={"only": ["alpha"]})) for _ in range(5)
    } == {"alpha"}
    assert {
        provider_of(chat(routing_client, auth, model="multi/llama", provider={"ignore": ["down", "beta"]}))
        for _ in range(5)
    } == {"alpha"}


def test_without_fallbacks_only_the_ordered_providers_are_tried(routing_client, auth, fakes):
    fakes["alpha"].script("llama-a", Reply(status=503, message="busy"))
    response = chat(routing_client, auth, model="multi/llama", provider={"order": ["alpha"], "allow_fallbacks": False})
    assert response.status_code == 502
    assert sent_to(fakes["beta"], "llama-b") == [] and fakes["down"].connections == 0
    assert len(sent_to(fakes["alpha"], "llama-a")) == 3, "its retries, on the one endpoint allowed"


def test_sort_by_price_and_the_floor_variant(app, routing_client, auth, account):
    assert provider_of(chat(routing_client, auth, model="multi/llama", provider={"sort": "price", **NO_DOWN})) == "beta"
    response = chat(routing_client, auth, model="multi/priced:floor")
    assert provider_of(response) == "beta" and response.get_json()["model"] == "multi/priced"
    assert usage_events(app, account)[-1].requested_model == "multi/priced:floor"


def test_sort_by_throughput_and_latency_follow_real_traffic(routing_app, routing_client, auth):
    health = routing_app.extensions["lunos"].health
    assert health.summary("alpha/llama-a")["tokens_per_second"] is None
    health.observe("alpha/llama-a", ttft_ms=400, tokens_per_s=20)
    health.observe("beta/llama-b", ttft_ms=100, tokens_per_s=90)
    assert provider_of(chat(routing_client, auth, model="multi/llama:nitro", provider=NO_DOWN)) == "beta"
    assert (
        provider_of(chat(routing_client, auth, model="multi/llama", provider={"sort": "latency", **NO_DOWN})) == "beta"
    )
    # Faster than any loopback answer can measure: the two requests above fed beta's real speed.
    for _ in range(4):
        health.observe("alpha/llama-a", ttft_ms=10, tokens_per_s=10**9)
    assert (
        provider_of(chat(routing_client, auth, model="multi/llama", provider={"sort": "throughput", **NO_DOWN}))
        == "alpha"
    )


def test_streams_feed_the_speed_figures(routing_app, routing_client, auth, fakes):
    fakes["alpha"].script("llama-a", Reply(chunk_delay_s=0.02))
    chat(routing_client, auth, model="multi/llama", stream=True, provider={"only": ["alpha"]})
    figures = routing_app.extensions["lunos"].health.summary("alpha/llama-a")
    assert figures["ttft_ms"] is not None and figures["tokens_per_second"] is not None


@pytest.mark.parametrize(
    "preference, body, expected",
    [
        ({"max_price": {"prompt": 2}}, {}, "beta"),
        ({"max_price": {"completion": 1}}, {}, "beta"),
        ({"require_parameters": True}, {"seed": 7}, "beta"),
        ({"data_collection": "deny"}, {}, "beta"),
        ({"zdr": True}, {}, "beta"),
    ],
)
def test_filters(routing_client, auth, preference, body, expected):
    for _ in range(3):
        assert provider_of(chat(routing_client, auth, model="multi/priced", provider=preference, **body)) == expected


def test_a_smaller_endpoint_is_skipped_for_a_prompt_it_cannot_hold(app, routing_client, auth, account):
    long_prompt = [{"role": "user", "content": "word " * 200}]
    for _ in range(3):
        assert provider_of(chat(routing_client, auth, model="multi/small", messages=long_prompt)) == "beta"
    skipped = [a for a in usage_events(app, account)[-1].attempts if a["skipped"]]
    assert skipped[0]["provider"] == "alpha" and "context" in skipped[0]["skipped"]


def test_no_endpoint_left_is_a_400_saying_why(app, routing_client, auth, account, fakes):
    response = chat(routing_client, auth, model="multi/priced", provider={"max_price": {"prompt": 0.1}, "zdr": True})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["param"]) == ("no_endpoints", "provider")
    assert "alpha (prompt price 3 above provider.max_price.prompt)" in error["message"]
    assert "beta (prompt price 1 above provider.max_price.prompt)" in error["message"]
    assert sent_to(fakes["alpha"], "priced-a") == [] and sent_to(fakes["beta"], "priced-b") == []
    assert usage_events(app, account)[-1].status == "refused"


@pytest.mark.parametrize(
    "provider, param",
    [
        ({"order": ["alpha", "nowhere"]}, "provider.order[1]"),
        ({"only": "alpha"}, "provider.only"),
        ({"sort": "vibes"}, "provider.sort"),
        ({"max_price": {"prompt": -1}}, "provider.max_price.prompt"),
        ({"max_price": {"tokens": 1}}, "provider.max_price.tokens"),
        ({"allow_fallbacks": "no"}, "provider.allow_fallbacks"),
        ({"data_collection": "maybe"}, "provider.data_collection"),
        ({"favourite": "alpha"}, "provider.favourite"),
        ("alpha", "provider"),
    ],
)
def test_bad_preferences_are_400_naming_the_param(routing_client, auth, provider, param):
    response = chat(routing_client, auth, model="multi/llama", provider=provider)
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == param


def test_the_thinking_variant_asks_each_kind_for_reasoning(routing_client, auth, fakes):
    response = chat(routing_client, auth, model="multi/llama:thinking", provider={"only": ["alpha"]})
    assert response.get_json()["model"] == "multi/llama"
    assert sent_to(fakes["alpha"], "llama-a")[0].body["reasoning_effort"] == "high"
    chat(routing_client, auth, model="multi/claude:thinking", max_tokens=3000, temperature=0.5)
    [sent] = sent_to(fakes["alpha"], "claude-cached")
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 2250}
    assert "temperature" not in sent.body and sent.body["max_tokens"] == 3000


def test_thinking_without_room_for_a_budget_is_a_400(routing_client, auth):
    response = chat(routing_client, auth, model="multi/claude:thinking", max_tokens=500)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "max_tokens"


def test_variants_combine_and_unknown_suffixes_are_unknown_models(routing_client, auth):
    assert chat(routing_client, auth, model="multi/llama:floor:thinking", provider=NO_DOWN).status_code == 200
    response = chat(routing_client, auth, model="multi/llama:turbo")
    assert response.get_json()["error"]["code"] == "model_not_found"


def test_azure_style_auth_header_and_query_reach_the_upstream(routing_client, auth, fakes):
    assert provider_of(chat(routing_client, auth, model="multi/azure")) == "azure"
    [sent] = sent_to(fakes["beta"], "gpt-4o")
    assert sent.path == "/openai/deployments/gpt/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == "upstream-secret" and "Authorization" not in sent.headers


def test_the_provider_object_is_not_sent_upstream(routing_client, auth, fakes):
    chat(routing_client, auth, model="multi/llama", provider={"only": ["alpha"]})
    assert "provider" not in sent_to(fakes["alpha"], "llama-a")[0].body
