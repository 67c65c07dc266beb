"""Bad input, route by route: each cause the fuzzing of issues 13 and 14 found is a clean,
OpenAI-shaped 4xx naming its param (404 for unknown ids and models), never a 5xx; and what
OpenAI accepts, Lunos accepts."""

import base64
import gzip
import json
import socket
import threading

import pytest
from werkzeug.serving import make_server

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import keys
from tests.api.test_chat import chat, sse_events
from tests.conftest import money, usage_events
from tests.dashboard.conftest import csrf_of
from tests.fake_http import stop

ADMIN_TOKEN = "admin-test-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HUGE_ID = 2**64
HI = [{"role": "user", "content": "hi"}]


def error_of(response, status, param=...):
    """The error of an OpenAI-shaped error answer of ``status`` (naming ``param`` when given)."""
    assert response.status_code == status, (response.request.path, response.get_data(as_text=True)[:500])
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not ...:
        assert error["param"] == param, error
    return error


def post_json_text(client, path, text, headers):
    """POST JSON text as is (json.dumps escapes lone surrogates as JavaScript does)."""
    return client.post(
        path,
        data=text.encode() if isinstance(text, str) else text,
        headers=headers,
        content_type="application/json",
        buffered=True,
    )


def settled(app, account):
    balance, ledger, reserved = money(app, account)
    return balance == ledger and reserved == 0


@pytest.fixture
def admin_client(make_app):
    return make_app(ADMIN_TOKEN=ADMIN_TOKEN).test_client()


@pytest.fixture
def management(app, account):
    with app.app_context():
        _, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"], kind=MANAGEMENT)
    return {"Authorization": f"Bearer {secret}"}


# --- POST /v1/chat/completions: the body as JSON ----------------------------------------------


def test_json_nested_far_too_deep_is_400_naming_the_field(client, auth, app, account):
    deep = "[" * 100_000 + "]" * 100_000
    text = '{"messages": [{"role": "user", "content": "hi"}], "metadata": ' + deep + "}"
    for stream in (False, True):
        body = text.replace("{", f'{{"stream": {json.dumps(stream)}, ', 1)
        error = error_of(post_json_text(client, "/v1/chat/completions", body, auth), 400, "metadata")
        assert "nested" in error["message"]
    assert settled(app, account)


def test_nesting_up_to_the_bound_is_accepted(make_app, auth):
    client = make_app(MAX_JSON_DEPTH=20).test_client()
    # The body is level 1, so a pass-through value may open 19 levels more.
    fits = {"messages": HI, "metadata": json.loads("[" * 19 + "]" * 19)}
    assert chat(client, auth, **fits).status_code == 200
    deeper = {"messages": HI, "metadata": json.loads("[" * 20 + "]" * 20)}
    error_of(chat(client, auth, **deeper), 400, "metadata")


def test_integers_beyond_64_bits_anywhere_are_400_naming_the_param(client, auth, app, account):
    for body, param in [
        ({"max_tokens": 2**64}, "max_tokens"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"logit_bias": {"50256": 2**64}}, "logit_bias.50256"),
        ({"metadata": {"deep": [1, [2, 10**30]]}}, "metadata.deep[1][1]"),
        ({"messages": [{"role": "user", "content": "hi", "extra": 2**70}]}, "messages[0].extra"),
    ]:
        for stream in (False, True):
            error = error_of(chat(client, auth, model="test/primary", stream=stream, **body), 400, param)
            assert "64-bit" in error["message"]
        assert settled(app, account) and not usage_events(app, account)


def test_integers_within_64_bits_pass_through(client, auth, upstream):
    response = chat(client, auth, model="test/primary", seed=2**63 - 1, logit_bias={"1": -(2**63)})
    assert response.status_code == 200, response.get_json()
    sent = upstream.requests_for("primary")[0].body
    assert sent["seed"] == 2**63 - 1 and sent["logit_bias"] == {"1": -(2**63)}


def test_a_number_too_large_for_any_type_is_400(client, auth):
    text = '{"messages": [{"role": "user", "content": "hi"}], "x": 1' + "0" * 400 + "}"
    error_of(post_json_text(client, "/v1/chat/completions", text, auth), 400)


@pytest.mark.parametrize("model", ["test/primary", "test/claude", "test/echo"])
def test_lone_surrogates_are_sent_on_as_the_replacement_character(client, auth, upstream, app, account, model):
    # What a JavaScript string cut in the middle of an emoji serialises to.
    body = {
        "model": model,
        "user": "u\ud83d",
        "messages": [
            {"role": "user", "content": "cut \ud83d"},
            {"role": "user", "content": [{"type": "text", "text": "\ude00 low"}]},
        ],
    }
    for stream in (False, True):
        response = post_json_text(client, "/v1/chat/completions", json.dumps({**body, "stream": stream}), auth)
        assert response.status_code == 200, response.get_json()
    if model != "test/echo":
        sent = upstream.seen[0].body
        assert "cut \ufffd" in json.dumps(sent, ensure_ascii=False)
        assert "\ufffd low" in json.dumps(sent, ensure_ascii=False)
    assert settled(app, account)


def test_an_escaped_backslash_before_u_is_text_not_a_surrogate(client, auth, upstream):
    text = json.dumps({"model": "test/primary", "messages": [{"role": "user", "content": "\\ud800"}]})
    assert post_json_text(client, "/v1/chat/completions", text, auth).status_code == 200
    assert upstream.seen[0].body["messages"][0]["content"] == "\\ud800"


def test_bytes_that_are_not_utf8_are_400(client, auth):
    for body, at in [
        (b'{"messages": [{"role": "user", "content": "\xed\xa0\x80 \xff"}]}', 43),  # an encoded surrogate
        (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', 46),  # Latin-1
    ]:
        error = error_of(post_json_text(client, "/v1/chat/completions", body, auth), 400)
        assert error["message"].startswith(f"The request body is not valid UTF-8 (at byte {at})"), error


def test_a_compressed_body_is_415_and_an_identity_one_is_read(client, auth):
    body = json.dumps({"model": "test/echo", "messages": HI}).encode()
    for encoding, packed in [("gzip", gzip.compress(body)), ("br", body)]:
        response = post_json_text(client, "/v1/chat/completions", packed, {**auth, "Content-Encoding": encoding})
        assert f"'{encoding}' is not accepted" in error_of(response, 415)["message"]
    response = post_json_text(client, "/v1/chat/completions", body, {**auth, "Content-Encoding": "identity"})
    assert response.status_code == 200


def test_a_body_that_is_not_an_object_is_400(client, auth):
    for body in [[], [{"messages": HI}], "text", 5, None]:
        error_of(post_json_text(client, "/v1/chat/completions", json.dumps(body), auth), 400)


# --- the chat schema ---------------------------------------------------------------------------


def test_image_url_that_is_not_an_object_with_a_url_is_400(client, auth):
    for image_url in ["https://x/y.png", 5, ["https://x/y.png"], None, {"url": 5}]:
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": image_url}]}]
        error = error_of(chat(client, auth, messages=messages), 400, "messages[0].content[0].image_url")
        assert error["type"] == "invalid_request_error"


def test_malformed_content_parts_are_400(client, auth):
    for part, param in [
        ({"type": "text", "text": 5}, "messages[0].content[0].text"),
        ({"type": "text"}, "messages[0].content[0]"),
        ({"type": "input_audio", "input_audio": "base64"}, "messages[0].content[0].input_audio"),
        ({"type": "file", "file": []}, "messages[0].content[0].file"),
        ({"type": ["text"], "text": "x"}, "messages[0].content[0]"),
        ("a string", "messages[0].content[0]"),
    ]:
        error_of(chat(client, auth, messages=[{"role": "user", "content": [part]}]), 400, param)


def test_null_in_optional_message_fields_means_absent(client, auth, upstream):
    # What ``messages.append(choice.message.model_dump())`` sends on the next turn.
    assistant = {
        "role": "assistant",
        "content": "Hello",
        "refusal": None,
        "function_call": None,
        "tool_calls": None,
        "audio": None,
        "annotations": [],
    }
    messages = [
        {"role": "user", "content": "hi", "name": None},
        assistant,
        {"role": "user", "content": "again", "tool_call_id": None},
    ]
    response = chat(client, auth, model="test/primary", messages=messages)
    assert response.status_code == 200, response.get_json()
    sent = upstream.requests_for("primary")[0].body["messages"]
    assert sent[0] == {"role": "user", "content": "hi"}
    assert sent[1] == {"role": "assistant", "content": "Hello", "annotations": []}
    assert sent[2] == {"role": "user", "content": "again"}


def test_an_sdk_tool_call_turn_round_trips(client, auth, upstream):
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    messages = [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [call],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42", "name": None},
    ]
    for model in ("test/primary", "test/claude"):
        assert chat(client, auth, model=model, messages=messages).status_code == 200


def test_optional_message_fields_of_the_wrong_type_are_400(client, auth):
    for message, param in [
        (
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "function": "lookup"}]},
            "messages[0].tool_calls[0].function",
        ),
        (
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": 5}}]},
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"role": "assistant", "content": None, "tool_calls": ["call"]}, "messages[0].tool_calls[0]"),
        ({"role": "assistant", "content": "x", "function_call": "f"}, "messages[0].function_call"),
        ({"role": "user", "content": "x", "name": 5}, "messages[0].name"),
        ({"role": "tool", "content": "x", "tool_call_id": None}, "messages[0].tool_call_id"),
    ]:
        error_of(chat(client, auth, messages=[message]), 400, param)


def test_malformed_tool_choice_is_400(client, auth):
    for tool_choice, param in [
        ({"type": "function", "function": "lookup"}, "tool_choice.function"),
        ({"function": {"name": "lookup"}}, "tool_choice.type"),
        (["auto"], "tool_choice"),
    ]:
        error_of(chat(client, auth, tool_choice=tool_choice), 400, param)


CUSTOM_TOOL = {"type": "custom", "custom": {"name": "grammar", "description": "free text"}}


def test_tools_of_other_types_pass_through_to_openai_compatible_upstreams(client, auth, upstream):
    tools = [{"type": "function", "function": {"name": "lookup"}}, CUSTOM_TOOL]
    choice = {"type": "custom", "custom": {"name": "grammar"}}
    response = chat(client, auth, model="test/primary", tools=tools, tool_choice=choice)
    assert response.status_code == 200, response.get_json()
    sent = upstream.requests_for("primary")[0].body
    assert sent["tools"] == tools and sent["tool_choice"] == choice


def test_a_function_tool_still_needs_its_function(client, auth):
    error_of(chat(client, auth, tools=[{"type": "function"}]), 400, "tools[0].function")
    error_of(chat(client, auth, tools=[{"type": ""}]), 400, "tools[0].type")


def test_anthropic_adapter_refuses_what_it_cannot_translate(client, auth, upstream, app, account):
    refused = 0
    for body, param in [
        ({"tools": [{"type": "function", "function": {"name": "f"}}, CUSTOM_TOOL]}, "tools[1].type"),
        (
            {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
            "tool_choice.type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ]:
        for stream in [False, True]:
            response = chat(client, auth, model="test/claude", stream=stream, **body)
            error = error_of(response, 400, param)
            assert error["type"] == "invalid_request_error" and "Anthropic" in error["message"]
            assert not upstream.seen, "nothing was sent"
            refused += 1
            events = usage_events(app, account)
            assert len(events) == refused, "one usage event per request"
            assert all(e.http_status == 400 and e.status != "streaming" and e.cost_micros == 0 for e in events)
            assert settled(app, account)


def test_messages_beyond_the_bound_are_400(make_app, auth):
    client = make_app(MAX_MESSAGES=3, MAX_CONTENT_PARTS=2).test_client()
    assert chat(client, auth, messages=HI * 3).status_code == 200
    error = error_of(chat(client, auth, messages=HI * 4), 400, "messages")
    assert "at most 3 messages" in error["message"]
    parts = [{"type": "text", "text": "a"}] * 3
    error_of(chat(client, auth, messages=[*HI, {"role": "user", "content": parts}]), 400, "messages[1].content")
    error_of(chat(client, auth, tools=[{"type": "function", "function": {"name": "f"}}] * 1025), 400, "tools")


# --- models, keys and authentication -----------------------------------------------------------


def test_unknown_model_is_404_in_every_place_a_model_is_named(client, auth, app, account):
    for body, param in (
        ({"model": "nope"}, "model"),
        ({"fallback_model": "nope"}, "fallback_model"),
        ({"models": ["test/echo", "nope"]}, "models[1]"),
    ):
        for stream in (False, True):
            error = error_of(chat(client, auth, stream=stream, **body), 404, param)
            assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")
    assert settled(app, account)


def test_x_api_key_wins_over_a_placeholder_bearer(client, api_key):
    headers = {"Authorization": "Bearer placeholder", "X-API-Key": api_key}
    assert chat(client, headers).status_code == 200
    assert (
        client.get("/v1/models", headers={"Authorization": "Bearer sk-lunos-nope", "X-API-Key": api_key}).status_code
        == 200
    )
    error = error_of(chat(client, {"Authorization": f"Bearer {api_key}", "X-API-Key": "sk-lunos-wrong"}), 401)
    assert error["code"] == "invalid_api_key"


# --- the body's size ---------------------------------------------------------------------------


def chunked_post(port, path, headers, body, chunk=500):
    """POST ``body`` with Transfer-Encoding: chunked over a raw socket: (status, JSON answer)."""
    chunks = (
        b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + chunk]), body[i : i + chunk]) for i in range(0, len(body), chunk))
        + b"0\r\n\r\n"
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunks
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_an_oversized_chunked_body_is_413_and_one_within_the_limit_is_served(make_app, auth):
    app = make_app(MAX_BODY_BYTES=1000)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        big = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
        status, answer = chunked_post(server.server_port, "/v1/chat/completions", auth, big)
        assert status == 413 and answer["error"]["type"] == "invalid_request_error"
        assert "larger than 1000 bytes" in answer["error"]["message"]
        small = json.dumps({"messages": [{"role": "user", "content": "x" * (1000 - 47)}]}).encode()
        assert len(small) == 1000
        status, answer = chunked_post(server.server_port, "/v1/chat/completions", auth, small)
        assert status == 200, answer
    finally:
        stop(server)


# --- /v1/keys ----------------------------------------------------------------------------------


def test_key_ids_beyond_the_integer_range_are_404(client, management):
    for method in ["get", "patch", "delete"]:
        for key_id in [2**31, HUGE_ID]:
            response = getattr(client, method)(f"/v1/keys/{key_id}", headers=management, json={"disabled": True})
            error_of(response, 404, "id")


def test_bad_key_fields_are_400(client, management):
    for body, param in [
        ({"requests_per_minute": 2**31}, "requests_per_minute"),
        ({"requests_per_minute": 2**64}, "requests_per_minute"),
        ({"credit_limit_usd": "1e999999999"}, "credit_limit_usd"),
        ({"credit_limit_usd": 10**20}, "credit_limit_usd"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at"),
        ({"expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
        ({"name": "nul\x00"}, "name"),
        ({"name": 5}, "name"),
        ({"allowed_models": ["test/\x00"]}, "allowed_models[0]"),
    ]:
        error_of(client.post("/v1/keys", headers=management, json=body), 400, param)


def test_a_key_body_that_is_not_an_object_is_400(client, management):
    for body in [[], [{"name": "x"}], "x", 5]:
        error_of(client.post("/v1/keys", headers=management, json=body), 400)
        created = client.post("/v1/keys", headers=management, json={}).get_json()
        error_of(client.patch(f"/v1/keys/{created['id']}", headers=management, json=body), 400)


def test_expiry_is_kept_in_utc(client, management):
    created = client.post("/v1/keys", headers=management, json={"expires_at": "2999-06-01T12:00:00+02:00"})
    assert created.status_code == 201
    assert created.get_json()["expires_at"] == "2999-06-01T10:00:00+00:00"


# --- /v1/usage, /v1/usage/events, /v1/generation -------------------------------------------------


def test_bad_usage_filters_are_400_naming_the_param(client, auth):
    for query, param in [
        (f"key={HUGE_ID}", "key"),
        (f"key={2**31}", "key"),
        ("key=\u00b2", "key"),
        ("key=-1", "key"),
        ("key=0", "key"),
        ("key=", "key"),
        ("to=0001-01-01T00:00:00", "to"),
        ("from=0001-01-01", "from"),
        ("to=9999-12-31T23:59:59-14:00", "to"),
        ("to=1969-12-31", "to"),
        ("app=%00", "app"),
        ("app=has space", "app"),
        ("model=a%00b", "model"),
        ("model=" + "m" * 201, "model"),
    ]:
        for path in ("/v1/usage", "/v1/usage/events"):
            error_of(client.get(f"{path}?{query}", headers=auth), 400, param)


def test_forged_cursors_are_400(client, auth):
    for raw in ["2026-01-01T00:00:00+00:00|\x00", "0001-01-01T00:00:00|x", "x" * 10]:
        cursor = base64.urlsafe_b64encode(raw.encode()).decode()
        error_of(client.get(f"/v1/usage/events?cursor={cursor}", headers=auth), 400, "cursor")


def test_unknown_generation_ids_are_404(client, auth):
    for generation_id in ["%00", "chatcmpl-" + "x" * 100, "x" * 1000]:
        error_of(client.get(f"/v1/generation?id={generation_id}", headers=auth), 404, "id")


# --- /v1/apps ----------------------------------------------------------------------------------


def test_bad_app_bodies_are_400(client, manager):
    for body, param in [
        ([], None),
        ([{"name": "x"}], None),
        ({"name": 5}, "name"),
        ({"name": ["x"]}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({}, "name"),
    ]:
        error_of(client.put("/v1/apps/shop", headers=manager, json=body), 400, param)


# --- /admin ------------------------------------------------------------------------------------


def test_admin_account_ids_beyond_the_integer_range_are_404(admin_client):
    for method, suffix in [
        ("get", ""),
        ("post", "/suspend"),
        ("post", "/unsuspend"),
        ("post", "/credits"),
        ("put", "/plan"),
    ]:
        for account_id in [2**31, HUGE_ID]:
            response = getattr(admin_client, method)(
                f"/admin/accounts/{account_id}{suffix}", headers=ADMIN, json={"usd": 1, "reason": "r", "plan": "pro"}
            )
            error_of(response, 404, "id")


def test_admin_bodies_that_are_not_objects_are_400(admin_client, account):
    for body in [[], [{"name": "x"}], "x", 5, None]:
        for path, method in [
            ("/admin/accounts", "post"),
            ("/admin/accounts/{id}/credits", "post"),
            ("/admin/accounts/{id}/plan", "put"),
        ]:
            response = getattr(admin_client, method)(path.format(id=account), headers=ADMIN, json=body)
            error_of(response, 400)


def test_bad_new_accounts_are_400(admin_client):
    for body, param in [
        ({"name": 5}, "name"),
        ({"name": ["x"]}, "name"),
        ({"name": {}}, "name"),
        ({}, "name"),
        ({"name": " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "big", "credits_usd": "1e999999999"}, "credits_usd"),
        ({"name": "big", "credits_usd": 1e308}, "credits_usd"),
        ({"name": "big", "credits_usd": [1]}, "credits_usd"),
        ({"name": "big", "credits_usd": 2**64}, "credits_usd"),
    ]:
        error_of(admin_client.post("/admin/accounts", headers=ADMIN, json=body), 400, param)


def test_bad_adjustments_are_400(admin_client, app, account):
    for body, param in [
        ({"usd": "1e999999999", "reason": "r"}, "usd"),
        ({"usd": -1e300, "reason": "r"}, "usd"),
        ({"usd": None, "reason": "r"}, "usd"),
        ({"usd": 1, "reason": ["r"]}, "reason"),
        ({"usd": 1, "reason": "r" * 501}, "reason"),
        ({"usd": 1, "reason": "a\x00"}, "reason"),
        ({"usd": 1, "reason": "r", "reference": "x" * 201}, "reference"),
        ({"usd": 1, "reason": "r", "reference": {"a": 1}}, "reference"),
        ({"usd": 1, "reason": "r", "reference": "a\x00"}, "reference"),
    ]:
        error_of(admin_client.post(f"/admin/accounts/{account}/credits", headers=ADMIN, json=body), 400, param)
        assert settled(app, account)


def test_a_numeric_reference_still_makes_a_retry_apply_once(admin_client, account):
    body = {"usd": 1, "reason": "ticket", "reference": 42}
    assert admin_client.post(f"/admin/accounts/{account}/credits", headers=ADMIN, json=body).get_json()["applied"]
    assert not admin_client.post(f"/admin/accounts/{account}/credits", headers=ADMIN, json=body).get_json()["applied"]


def test_bad_plans_are_400(admin_client, account):
    for plan in [[], {}, ["pro"], 5, None, "gold"]:
        error_of(admin_client.put(f"/admin/accounts/{account}/plan", headers=ADMIN, json={"plan": plan}), 400, "plan")


# --- /dashboard forms --------------------------------------------------------------------------


@pytest.fixture
def dashboard(client, app, account):
    """The CSRF token of a signed-in dashboard session on ``client``."""
    with app.app_context():
        _, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"], kind=MANAGEMENT)
    page = client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"key": secret, "csrf_token": csrf_of(page)}).status_code == 302
    return csrf_of(client.get("/dashboard/keys"))


def test_dashboard_forms_take_bad_input_without_a_5xx(client, dashboard):
    response = client.post("/dashboard/keys", data={"name": "nul\x00name", "csrf_token": dashboard})
    assert response.status_code == 200 and "nulname" in response.get_data(as_text=True)
    for key_id in (2**31, HUGE_ID):
        assert client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": dashboard}).status_code == 404
    assert client.get("/dashboard/?days=%00").status_code == 200
    assert client.get("/dashboard/apps?days=99999999999999999999").status_code == 200


def test_dashboard_login_with_bad_keys_is_401(client):
    for key in ("\x00", "sk-lunos-" + "x" * 10_000, "sk-lunos-\x00", " "):
        page = client.get("/dashboard/login")
        assert client.post("/dashboard/login", data={"key": key, "csrf_token": csrf_of(page)}).status_code == 401


def test_streams_of_bad_requests_leave_nothing_reserved(client, auth, app, account):
    for body in ({"max_tokens": 2**64}, {"model": "nope"}, {"messages": [{"role": "user", "content": [5]}]}):
        response = chat(client, auth, stream=True, **body)
        assert 400 <= response.status_code < 500
        assert not sse_events(response) or "error" in response.get_json()
    assert settled(app, account)
