"""Exact prices from the endpoint that answered: cache reads and writes (5-minute and 1-hour),
output, the long-context tier and a price per request, to the micro-dollar, the same streamed
and not; and reservations that cover the dearest endpoint that could be tried."""

import uuid

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.services import accounts
from tests.api.test_chat import chat, sse_events
from tests.conftest import money, usage_events
from tests.upstream import Reply


def billed(app, account):
    event = usage_events(app, account)[-1]
    balance, ledger, reserved = money(app, account)
    assert balance == ledger and reserved == 0
    return event


@pytest.mark.parametrize("stream", [False, True])
def test_openai_style_usage_counts_cache_reads_inside_the_prompt(app, routing_client, auth, account, fakes, stream):
    # prompt 1000 of which 600 cache reads and 100 cache writes; 200 output; $0.001 a request:
    # 300 x 2.5 + 600 x 1.25 + 100 x 3 + 200 x 10 + 1000 = 4800 micro-USD.
    fakes["alpha"].script(
        "gpt-cached",
        Reply(
            usage=(1000, 200),
            usage_details={"prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 100}},
        ),
    )
    response = chat(routing_client, auth, model="multi/gpt", stream=stream, stream_options={"include_usage": True})
    usage = (
        [e for e in sse_events(response) if e != "[DONE]" and e.get("usage")][-1]["usage"]
        if stream
        else response.get_json()["usage"]
    )
    assert usage["prompt_tokens"] == 1000 and usage["completion_tokens"] == 200
    assert usage["prompt_tokens_details"] == {"cached_tokens": 600, "cache_write_tokens": 100}
    assert usage["cost"] == pytest.approx(0.0048)
    event = billed(app, account)
    assert (event.cost_micros, event.prompt_tokens, event.cached_tokens, event.cache_write_tokens) == (
        4800,
        1000,
        600,
        100,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_style_buckets_are_disjoint_and_add_up(app, routing_client, auth, account, fakes, stream):
    # 100 uncached x 3 + 1000 reads x 0.3 + 100 5-minute writes x 3.75 + 200 1-hour writes x 6
    # + 50 output x 15 = 300 + 300 + 375 + 1200 + 750 = 2925 micro-USD.
    fakes["alpha"].script(
        "claude-cached",
        Reply(
            usage=(100, 50),
            usage_details={
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 300,
                "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            },
        ),
    )
    response = chat(routing_client, auth, model="multi/claude", stream=stream, stream_options={"include_usage": True})
    usage = (
        [e for e in sse_events(response) if e != "[DONE]" and e.get("usage")][-1]["usage"]
        if stream
        else response.get_json()["usage"]
    )
    assert usage["prompt_tokens"] == 1400
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1000
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == 300
    event = billed(app, account)
    assert event.cost_micros == 2925
    assert (event.cached_tokens, event.cache_write_tokens, event.cache_write_1h_tokens) == (1000, 100, 200)


@pytest.mark.parametrize("stream", [False, True])
def test_a_long_prompt_is_priced_at_the_long_context_tier(app, routing_client, auth, account, fakes, stream):
    # Above 200,000 prompt tokens: 250,000 x 6 + 100 x 22.5 = 1,502,250 micro-USD.
    fakes["alpha"].script("claude-cached", Reply(usage=(250_000, 100)))
    chat(routing_client, auth, model="multi/claude", stream=stream)
    assert billed(app, account).cost_micros == 1_502_250


def test_the_same_request_costs_the_same_streamed_and_not(app, routing_client, auth, account, fakes):
    details = {"prompt_tokens_details": {"cached_tokens": 333}}
    fakes["alpha"].script("gpt-cached", Reply(usage=(777, 55), usage_details=details))
    chat(routing_client, auth, model="multi/gpt")
    chat(routing_client, auth, model="multi/gpt", stream=True)
    plain, streamed = usage_events(app, account)[-2:]
    assert plain.cost_micros == streamed.cost_micros == round(444 * 2.5 + 333 * 1.25 + 55 * 10 + 1000)


def _balance_exactly(app, account, micros):
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, micros - acct.balance_micros, "exact balance", f"test:{uuid.uuid4()}")


def test_the_reservation_covers_the_dearest_endpoint_that_could_be_tried(app, routing_client, auth, account, fakes):
    body = {"model": "multi/priced", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    # 100 output tokens: 400 micro-USD at alpha's price, 100 at beta's; the prompt adds a few.
    _balance_exactly(app, account, 300)
    assert chat(routing_client, auth, **body).status_code == 402, "alpha could be tried"
    response = chat(routing_client, auth, **body, provider={"only": ["beta"]})
    assert response.status_code == 200, "only beta can be tried, and it fits"
