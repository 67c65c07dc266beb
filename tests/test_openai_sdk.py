"""The official openai SDK, unmodified but for its base URL, against a live gateway."""

import openai
import pytest

from tests.upstream import Reply


@pytest.fixture
def sdk(live_server, api_key):
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key=api_key, max_retries=0, timeout=10)


def test_non_streaming(sdk):
    completion = sdk.chat.completions.create(model="test/primary", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hello from upstream"
    assert completion.model == "test/primary"
    assert completion.usage.total_tokens == 18


def test_streaming_with_usage(sdk):
    stream = sdk.chat.completions.create(
        model="test/primary",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}],
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from upstream"
    assert chunks[-1].usage.completion_tokens == 7


def test_echo_streaming_default_model(sdk):
    stream = sdk.chat.completions.create(
        model="test/echo", stream=True, messages=[{"role": "user", "content": "one two three"}]
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three"


def test_models_list(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert "test/primary" in ids and "test/claude" in ids
    assert sdk.models.retrieve("test/claude").owned_by == "fake-anthropic"


def test_error_classes(sdk, live_server, upstream):
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="test/primary", messages=[], temperature=1)
    assert bad.value.body["param"] == "messages"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server}/v1", api_key="sk-lunos-wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope/nothing")
    upstream.script("primary", Reply(status=500))
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.chat.completions.create(model="test/primary", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502


def test_mid_stream_failure_raises_in_sdk(sdk, upstream):
    upstream.script("primary", Reply(words=("a", " b", " c"), reset_after=2))
    stream = sdk.chat.completions.create(
        model="test/primary", stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert "mid-stream" in str(failed.value)


def test_rate_limit_and_credit_errors(sdk, app, account):
    from tests.conftest import set_plan

    set_plan(app, account, "echo-only")  # 3 requests a minute
    for _ in range(3):
        sdk.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hi"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_insufficient_credits_error(sdk, app, account, upstream):
    import uuid

    from lunos.extensions import db
    from lunos.models import Account
    from lunos.services import accounts

    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, -acct.balance_micros, "drain", f"test:{uuid.uuid4()}")
    with pytest.raises(openai.APIStatusError) as broke:
        sdk.chat.completions.create(model="test/primary", messages=[{"role": "user", "content": "hi"}])
    assert broke.value.status_code == 402
    assert broke.value.body["type"] == "insufficient_credits"
    assert not upstream.seen


def test_unknown_model_raises_not_found_with_its_code(sdk):
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nope/nothing", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    assert missing.value.type == "invalid_request_error"


def test_the_sdks_own_message_dump_is_accepted_on_the_next_turn(sdk, upstream):
    upstream.script("primary", Reply(tool_call={"id": "call_1", "name": "lookup", "arguments": '{"q": 1}'}), Reply())
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "look it up"}]
    for model in ("test/primary", "test/claude"):
        first = sdk.chat.completions.create(model=model, messages=messages, tools=tools)
        turn = [*messages, first.choices[0].message.model_dump()]  # nulls in refusal, audio, function_call...
        if first.choices[0].message.tool_calls:
            turn.append({"role": "tool", "tool_call_id": first.choices[0].message.tool_calls[0].id, "content": "42"})
        second = sdk.chat.completions.create(model=model, messages=turn, tools=tools)
        assert second.choices[0].message.content


def test_x_api_key_with_a_placeholder_bearer(live_server, api_key):
    client = openai.OpenAI(
        base_url=f"{live_server}/v1", api_key="placeholder", max_retries=0, default_headers={"X-API-Key": api_key}
    )
    assert client.chat.completions.create(model="test/echo", messages=[{"role": "user", "content": "hi"}])
