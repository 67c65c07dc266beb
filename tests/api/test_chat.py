"""POST /v1/chat/completions against the loopback upstream."""

import json

import pytest

from tests.conftest import money, usage_events
from tests.upstream import Reply


def chat(client, auth, **body):
    """POST a completion and read it whole; closing the response settles it, as a WSGI server does."""
    body.setdefault("messages", [{"role": "user", "content": "Hi there"}])
    return client.post("/v1/chat/completions", json=body, headers=auth, buffered=True)


def sse_events(response):
    """The data payloads of an SSE body, parsed; comments are returned as ':' markers."""
    events = []
    for block in response.get_data(as_text=True).split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            events.append(":")
        elif block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_echo_default_model_answers_without_any_provider_key(client, auth):
    response = chat(client, auth, messages=[{"role": "user", "content": "ping pong"}])
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "test/echo" and answer["provider"] == "echo"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "ping pong"}
    assert answer["usage"]["completion_tokens"] > 0
    assert response.headers["x-request-id"] in answer["id"]


def test_non_streaming_proxies_to_upstream_and_renames_model(client, auth, upstream):
    response = chat(client, auth, model="test/primary", temperature=0.3, logit_bias={"42": 1})
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["model"] == "test/primary" and answer["provider"] == "fake"
    assert answer["choices"][0]["message"]["content"] == "Hello from upstream"
    # cost: 11 prompt tokens at $1/M + 7 completion tokens at $2/M = 25 micro-USD
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "cost": 0.000025}
    sent = upstream.requests_for("primary")[0]
    assert sent.body["temperature"] == 0.3
    assert sent.body["logit_bias"] == {"42": 1}, "unknown parameters pass through"
    assert sent.headers["Authorization"] == "Bearer upstream-secret"
    assert "fallback_model" not in sent.body


def test_alias_resolves_to_catalog_model(client, auth):
    assert chat(client, auth, model="primary-alias").get_json()["model"] == "test/primary"


def test_streaming_forwards_chunks_and_done(client, auth, upstream):
    response = chat(client, auth, model="test/primary", stream=True)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert text == "Hello from upstream"
    assert all(e["model"] == "test/primary" for e in events[:-1])
    assert not any("usage" in e for e in events[:-1]), "usage is forwarded only when asked for"
    sent = upstream.requests_for("primary")[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_streaming_forwards_usage_when_asked(client, auth):
    events = sse_events(chat(client, auth, model="test/primary", stream=True, stream_options={"include_usage": True}))
    usage_chunks = [e for e in events[:-1] if e.get("usage")]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["total_tokens"] == 18


def test_keepalive_comments_while_upstream_is_silent(make_app, upstream, account):
    app = make_app(STREAM_KEEPALIVE_S=0.05)
    from lunos.extensions import db
    from lunos.models import Account
    from lunos.services import keys

    with app.app_context():
        _, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"])
    upstream.script("primary", Reply(chunk_delay_s=0.3))
    events = sse_events(chat(app.test_client(), {"X-API-Key": secret}, model="test/primary", stream=True))
    assert ":" in events, "a keep-alive comment was sent during the silence"
    assert events[-1] == "[DONE]"


def test_retry_then_success_on_same_model(client, auth, upstream):
    upstream.script("primary", Reply(status=500), Reply(status=429, retry_after="0"), Reply())
    answer = chat(client, auth, model="test/primary").get_json()
    assert answer["model"] == "test/primary"
    assert len(upstream.requests_for("primary")) == 3


def test_fallback_model_answers_when_primary_keeps_failing(client, auth, upstream):
    upstream.script("primary", Reply(status=503))
    answer = chat(client, auth, model="test/primary", fallback_model="test/backup").get_json()
    assert answer["model"] == "test/backup"
    assert len(upstream.requests_for("primary")) == 3, "1 try + 2 retries before falling back"


def test_models_list_is_tried_in_order(client, auth, upstream):
    upstream.script("primary", Reply(status=500))
    upstream.script("backup", Reply(status=502))
    answer = chat(client, auth, models=["test/primary", "test/backup", "test/third"]).get_json()
    assert answer["model"] == "test/third"


def test_non_retryable_error_moves_on_without_retrying(client, auth, upstream):
    upstream.script("primary", Reply(status=401, message="bad provider key"))
    answer = chat(client, auth, model="test/primary", fallback_model="test/backup").get_json()
    assert answer["model"] == "test/backup"
    assert len(upstream.requests_for("primary")) == 1


def test_retry_after_beyond_cap_skips_to_next_candidate(client, auth, upstream):
    upstream.script("primary", Reply(status=429, retry_after="3600"))
    answer = chat(client, auth, model="test/primary", fallback_model="test/backup").get_json()
    assert answer["model"] == "test/backup"
    assert len(upstream.requests_for("primary")) == 1


def test_all_candidates_fail_is_502_naming_each(client, auth, upstream):
    upstream.script("primary", Reply(status=500, message="primary exploded"))
    upstream.script("backup", Reply(status=429, message="backup busy"))
    response = chat(client, auth, model="test/primary", fallback_model="test/backup")
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["type"] == "upstream_error"
    assert "test/primary" in error["message"] and "primary exploded" in error["message"]
    assert "test/backup" in error["message"] and "backup busy" in error["message"]


def test_all_candidates_time_out_is_504(client, auth, upstream):
    upstream.script("primary", Reply(wait_s=2.0))
    response = chat(client, auth, model="test/primary")
    assert response.status_code == 504
    assert response.get_json()["error"]["type"] == "timeout_error"


def test_upstream_rejecting_the_request_is_400(client, auth, upstream):
    upstream.script("primary", Reply(status=400, message="messages too long"))
    upstream.script("backup", Reply(status=400, message="context exceeded"))
    response = chat(client, auth, model="test/primary", fallback_model="test/backup")
    assert response.status_code == 400
    error = response.get_json()["error"]
    # As the last upstream said it; the usage event keeps every attempt's.
    assert error == {"message": "context exceeded", "type": "invalid_request_error", "param": None, "code": None}
    assert len(upstream.requests_for("primary")) == 1, "a rejected request is not retried"


def test_unreachable_upstream_is_502(make_app, auth, tmp_path):
    catalog = tmp_path / "catalog.toml"
    catalog.write_text("""
default_model = "dead/model"
[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[models]]
id = "dead/model"
provider = "dead"
input_usd_per_mtok = 1
output_usd_per_mtok = 1
context_length = 10
max_output_tokens = 10
""")
    response = chat(make_app(CATALOG=str(catalog)).test_client(), auth)
    assert response.status_code == 502
    assert "connection failed" in response.get_json()["error"]["message"]


def test_stream_falls_back_when_primary_breaks_before_any_output(client, auth, upstream):
    upstream.script("primary", Reply(reset_after=0))
    events = sse_events(chat(client, auth, model="test/primary", fallback_model="test/backup", stream=True))
    assert events[-1] == "[DONE]"
    assert {e["model"] for e in events[:-1]} == {"test/backup"}, "the client never sees the broken model"


def test_stream_reset_after_output_ends_with_error_event(client, auth, upstream):
    upstream.script("primary", Reply(words=("one", " two", " three"), reset_after=2))
    events = sse_events(chat(client, auth, model="test/primary", fallback_model="test/backup", stream=True))
    assert "[DONE]" not in events, "a broken stream is never reported as a success"
    assert events[-1]["error"]["type"] == "upstream_error"
    contents = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e.get("choices")]
    assert "one" in contents and " two" in contents
    assert not upstream.requests_for("backup"), "no switch after content reached the client"


def test_stream_error_event_from_upstream_is_forwarded_as_error(client, auth, upstream):
    upstream.script("primary", Reply(error_after=1))
    events = sse_events(chat(client, auth, model="test/primary", stream=True))
    assert events[-1]["error"]["type"] == "upstream_error"
    assert "overloaded" in events[-1]["error"]["message"]


def test_stream_all_fail_before_opening_is_http_error(client, auth, upstream):
    upstream.script("primary", Reply(status=500))
    response = chat(client, auth, model="test/primary", stream=True)
    assert response.status_code == 502
    assert response.get_json()["error"]["type"] == "upstream_error"


def test_client_disconnect_closes_upstream(client, auth, upstream):
    upstream.script("primary", Reply(words=tuple(f" w{i}" for i in range(50)), chunk_delay_s=0.02))
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        buffered=False,
        json={
            "model": "test/primary",
            "stream": True,
            "user": "leaver",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    body = iter(response.response)
    first = next(piece for piece in body if piece)  # an empty first piece sends the headers
    assert b"w0" in first
    response.close()  # what the WSGI server does when the client goes away
    assert upstream.wait_disconnect("leaver"), "the gateway closed its upstream request"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ],
)
def test_schema_violation_is_400_naming_param(client, auth, body, param):
    response = client.post("/v1/chat/completions", json=body, headers=auth)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_model_is_404_model_not_found(client, auth):
    response = chat(client, auth, model="nope/nothing")
    assert response.status_code == 404
    assert response.get_json()["error"] == {
        "message": "The model 'nope/nothing' does not exist in this gateway's catalog.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    response = chat(client, auth, model="test/primary", models=["test/backup", "nope"])
    assert response.status_code == 404 and response.get_json()["error"]["param"] == "models[1]"
    response = chat(client, auth, model="test/primary", fallback_model="nope")
    assert response.status_code == 404 and response.get_json()["error"]["param"] == "fallback_model"


def test_malformed_json_is_400(client, auth):
    response = client.post("/v1/chat/completions", data="{not json", headers=auth, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "invalid_request_error"


def test_body_over_limit_is_413(make_app, auth):
    client = make_app(MAX_BODY_BYTES=1000).test_client()
    response = chat(client, auth, messages=[{"role": "user", "content": "x" * 2000}])
    assert response.status_code == 413
    assert response.get_json()["error"]["type"] == "invalid_request_error"


def test_images_and_tools_pass_through(client, auth, upstream):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        }
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    upstream.script("primary", Reply(tool_call={"id": "call_1", "name": "lookup", "arguments": '{"q": 1}'}))
    answer = chat(client, auth, model="test/primary", messages=messages, tools=tools, tool_choice="auto").get_json()
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    sent = upstream.requests_for("primary")[0].body
    assert sent["messages"] == messages and sent["tools"] == tools


@pytest.mark.parametrize("stream", [False, True])
def test_the_echo_model_stops_at_the_output_limit_like_an_upstream(app, client, auth, account, stream):
    words = "alpha beta gamma delta " * 1000  # about 5,750 tokens; the model answers 1,000 at most
    for asked, limit in ((None, 1000), (3, 3)):
        body = {"model": "test/echo", "stream": stream, "messages": [{"role": "user", "content": words}]}
        if asked:
            body["max_tokens"] = asked
        response = chat(client, auth, **body)
        assert response.status_code == 200
        if stream:
            events = [e for e in sse_events(response) if isinstance(e, dict)]
            finish = [c["finish_reason"] for e in events for c in e.get("choices", []) if c["finish_reason"]]
            assert finish == ["length"]
        else:
            assert response.get_json()["choices"][0]["finish_reason"] == "length"
        assert 0 < usage_events(app, account)[-1].completion_tokens <= limit


@pytest.mark.parametrize("stream", [False, True])
def test_the_echo_model_refuses_a_prompt_over_its_context_and_bills_nothing(app, client, auth, account, stream):
    # The model's context is 8,000 tokens: about 8,600 in the messages, or 5,750 and 3,000 asked for.
    for words, output in (
        ("alpha beta gamma delta " * 1500, {}),
        ("alpha beta gamma delta " * 1000, {"max_tokens": 3000}),
    ):
        messages = [{"role": "user", "content": words}]
        response = chat(client, auth, model="test/echo", stream=stream, messages=messages, **output)
        assert response.status_code == 400
        error = response.get_json()["error"]
        assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
        assert error["type"] == "invalid_request_error" and "maximum context length is 8000 tokens" in error["message"]
    refused = usage_events(app, account)
    assert [(event.status, event.cost_micros) for event in refused] == [("upstream_error", 0)] * 2
    balance, ledger, reserved = money(app, account)
    assert balance == ledger == 10_000_000 and reserved == 0
    assert chat(client, auth, model="test/echo", stream=stream, messages=messages, max_tokens=2000).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_the_echo_model_answers_n_choices_and_bills_them_all(app, client, auth, account, stream):
    body = {"model": "test/echo", "n": 2, "stream": stream, "messages": [{"role": "user", "content": "one two"}]}
    response = chat(client, auth, **body)
    assert response.status_code == 200
    if stream:
        texts = {}
        for event in sse_events(response):
            for choice in event.get("choices", []) if isinstance(event, dict) else ():
                texts[choice["index"]] = texts.get(choice["index"], "") + (choice["delta"].get("content") or "")
    else:
        texts = {c["index"]: c["message"]["content"] for c in response.get_json()["choices"]}
    assert texts == {0: "one two", 1: "one two"}
    one_choice = chat(client, auth, **{**body, "n": 1, "stream": False}).get_json()["usage"]["completion_tokens"]
    assert usage_events(app, account)[-2].completion_tokens == 2 * one_choice
