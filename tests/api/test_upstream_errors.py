"""What a client sees when upstreams fail: the upstream's own error when every candidate rejected
the request itself, 429 when every attempt was rate limited, and no invitation to retry a 502
or 504 that came after Lunos's own retries (the SDKs would multiply the load)."""

import openai
import pytest

from tests.api.test_chat import chat, sse_events
from tests.conftest import money, usage_events
from tests.upstream import Reply

OVERFLOW = Reply(
    status=400,
    message="This model's maximum context length is 8192 tokens.",
    code="context_length_exceeded",
    param="messages",
)


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_overflow_reaches_the_client_as_the_upstream_sent_it(app, client, auth, account, upstream, stream):
    upstream.script("primary", OVERFLOW)
    response = chat(client, auth, model="test/primary", stream=stream)
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "message": "This model's maximum context length is 8192 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    [event] = usage_events(app, account)
    assert event.status == "upstream_error" and "test/primary (fake)" in event.error
    assert event.attempts[0]["code"] == "context_length_exceeded"


def test_the_sdk_sees_the_upstreams_code(live_server, api_key, upstream):
    upstream.script("primary", OVERFLOW)
    sdk = openai.OpenAI(base_url=f"{live_server}/v1", api_key=api_key)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="test/primary", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"


def test_a_502_after_lunoss_retries_is_not_retried_by_the_sdk(live_server, api_key, upstream):
    upstream.script("primary", Reply(status=503, message="overloaded"))
    sdk = openai.OpenAI(base_url=f"{live_server}/v1", api_key=api_key)  # max_retries=2 by default
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.chat.completions.create(model="test/primary", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.requests_for("primary")) == 3, "one gateway request: Lunos's attempt and its two retries"


def test_a_504_says_not_to_retry(client, auth, upstream):
    upstream.script("primary", Reply(wait_s=2.0))  # past the test catalog's 1.5 s timeout
    response = chat(client, auth, model="test/primary")
    assert response.status_code == 504
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("stream", [False, True])
def test_rate_limited_on_every_attempt_is_a_429_with_the_shortest_retry_after(client, auth, upstream, stream):
    # Retry-After beyond the cap (2 s in tests): no retry, straight on to the next candidate.
    upstream.script("primary", Reply(status=429, message="slow down", retry_after="30"))
    upstream.script("backup", Reply(status=429, message="slow down", retry_after="20"))
    response = chat(client, auth, model="test/primary", fallback_model="test/backup", stream=stream)
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "upstream_rate_limited")
    assert response.headers["Retry-After"] == "20"
    assert "x-should-retry" not in response.headers


def test_rate_limited_and_broken_is_a_502(client, auth, upstream):
    upstream.script("primary", Reply(status=429, message="slow down", retry_after="30"))
    upstream.script("backup", Reply(status=500, message="broken"))
    response = chat(client, auth, model="test/primary", fallback_model="test/backup")
    assert response.status_code == 502 and response.headers["x-should-retry"] == "false"


def test_a_stream_sends_its_headers_before_the_first_token(live_server, api_key, upstream):
    import requests

    upstream.script("primary", Reply(words=("late",), chunk_delay_s=1.0))
    response = requests.post(
        f"{live_server}/v1/chat/completions",
        stream=True,
        timeout=0.8,
        headers={"Authorization": f"Bearer {api_key}"},
        json={"model": "test/primary", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    # The read timeout (0.8 s) is shorter than the first token's delay: the headers came first.
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    response.close()


def test_a_stream_without_upstream_usage_gets_the_estimate_it_is_billed(app, client, auth, account, upstream):
    upstream.script("primary", Reply(usage=None, words=("twelve characters",)))
    events = sse_events(chat(client, auth, model="test/primary", stream=True, stream_options={"include_usage": True}))
    [usage] = [e["usage"] for e in events[:-1] if e.get("usage")]
    assert usage["estimated"] is True and usage["completion_tokens"] > 0
    [event] = usage_events(app, account)
    assert event.usage_estimated and event.completion_tokens == usage["completion_tokens"]
    assert event.cost_micros / 1_000_000 == pytest.approx(usage["cost"])


def test_usage_cost_has_no_exponent_in_answers_and_streams(client, auth, upstream):
    upstream.script("primary", Reply(usage=(1, 0)))  # one input token at $1/M: 0.000001 USD
    assert b'"cost":0.000001' in chat(client, auth, model="test/primary").get_data()
    streamed = chat(client, auth, model="test/primary", stream=True, stream_options={"include_usage": True})
    assert b'"cost":0.000001' in streamed.get_data()


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_text_postgresql_cannot_store_is_still_settled(app, client, auth, account, upstream, stream):
    upstream.script("primary", Reply(status=400, message="bad \x00 byte and \ud800 half", code="odd\x00code"))
    response = chat(client, auth, model="test/primary", stream=stream)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["message"] == "bad \x00 byte and \ufffd half" and error["code"] == "odd\x00code"
    [event] = usage_events(app, account)
    assert event.status == "upstream_error" and "\x00" not in event.error and "bad  byte and \ufffd half" in event.error
    assert event.attempts[0]["code"] == "oddcode"
    assert money(app, account)[2] == 0, "the hold is released"
