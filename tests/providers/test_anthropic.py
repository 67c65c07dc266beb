"""The Anthropic adapter against the loopback upstream speaking the Messages API."""

import json

from tests.api.test_chat import chat, sse_events
from tests.upstream import Reply


def test_request_is_translated_to_messages_api(client, auth, upstream):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "measure", "arguments": '{"unit": "m"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "3 m"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "measure",
                "description": "Measure it",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    response = chat(
        client,
        auth,
        model="test/claude",
        messages=messages,
        tools=tools,
        tool_choice="required",
        stop="END",
        temperature=0.5,
        user="u-1",
        seed=3,
    )
    assert response.status_code == 200, response.get_json()
    sent = upstream.requests_for("claude")[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "upstream-secret"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    body = sent.body
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["max_tokens"] == 2048, "the catalog's max output when the client sets none"
    assert body["stop_sequences"] == ["END"] and body["temperature"] == 0.5
    assert body["metadata"] == {"user_id": "u-1"}
    assert "seed" not in body, "parameters the Messages API lacks are dropped"
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"] == [
        {"name": "measure", "description": "Measure it", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "measure", "input": {"unit": "m"}}
    ]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 m"}]


def test_answer_is_translated_to_chat_completion(client, auth, upstream):
    upstream.script("claude", Reply(usage=(20, 5)))
    answer = chat(client, auth, model="test/claude", max_tokens=50).get_json()
    assert upstream.requests_for("claude")[0].body["max_tokens"] == 50
    assert answer["model"] == "test/claude" and answer["provider"] == "fake-anthropic"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Hello from upstream"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 20 and answer["usage"]["completion_tokens"] == 5


def test_tool_use_answer_becomes_tool_calls(client, auth, upstream):
    upstream.script("claude", Reply(tool_call={"id": "toolu_9", "name": "lookup", "arguments": '{"q": "x"}'}))
    choice = chat(client, auth, model="test/claude").get_json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_9" and call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"q": "x"}


def test_stream_events_become_chunks(client, auth, upstream):
    upstream.script("claude", Reply(usage=(12, 3)))
    events = sse_events(chat(client, auth, model="test/claude", stream=True, stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from upstream"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 12 and chunks[-1]["usage"]["completion_tokens"] == 3


def test_streamed_tool_use_becomes_tool_call_deltas(client, auth, upstream):
    upstream.script("claude", Reply(tool_call={"id": "toolu_2", "name": "lookup", "arguments": '{"q": "abc"}'}))
    chunks = sse_events(chat(client, auth, model="test/claude", stream=True))[:-1]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0]["id"] == "toolu_2" and calls[0]["function"]["name"] == "lookup"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"q": "abc"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_overloaded_529_is_retried(client, auth, upstream):
    upstream.script("claude", Reply(status=529, message="Overloaded"), Reply())
    assert chat(client, auth, model="test/claude").status_code == 200
    assert len(upstream.requests_for("claude")) == 2


def test_error_event_mid_stream_becomes_error_event(client, auth, upstream):
    upstream.script("claude", Reply(error_after=1))
    events = sse_events(chat(client, auth, model="test/claude", stream=True))
    assert events[-1]["error"]["type"] == "upstream_error"
    assert "overloaded" in events[-1]["error"]["message"]
