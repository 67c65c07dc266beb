"""POST /v1/embeddings: against the loopback upstream and the echo model, through the openai SDK,
metered and billed like chat; every bad input a 400 naming its param."""

import base64
import math
import struct
import uuid

import openai
import pytest
import requests

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import accounts, keys
from lunos.services.embeddings import input_estimate, input_upper_estimate
from tests.api.test_chat import chat
from tests.conftest import money, set_plan, usage_events
from tests.upstream import Reply


def embed(client, auth, **body):
    body.setdefault("model", "test/embed")
    body.setdefault("input", "Hello there")
    return client.post("/v1/embeddings", json=body, headers=auth)


def nested_lists(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def decoded(vector_base64):
    raw = base64.b64decode(vector_base64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_upstream_embeddings_renamed_billed_and_passed_through(app, client, auth, account, upstream):
    response = embed(
        client,
        {**auth, "X-App-ID": "search"},
        input=["one", "two"],
        dimensions=4,
        encoding_format="float",
        user="u-1",
        truncate="END",
    )
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert (answer["object"], answer["model"], answer["provider"]) == ("list", "test/embed", "fake")
    assert [(d["object"], d["index"], len(d["embedding"])) for d in answer["data"]] == [
        ("embedding", 0, 4),
        ("embedding", 1, 4),
    ]
    # 11 input tokens (the upstream's count) at $1 per million: 11 micro-USD
    assert answer["usage"] == {"prompt_tokens": 11, "total_tokens": 11, "cost": 0.000011}
    assert response.headers["x-ratelimit-limit-requests"] == "10000"
    [sent] = upstream.requests_for("embed")
    assert sent.path == "/v1/embeddings" and sent.headers["Authorization"] == "Bearer upstream-secret"
    assert sent.body == {
        "model": "embed",
        "input": ["one", "two"],
        "dimensions": 4,
        "encoding_format": "float",
        "user": "u-1",
        "truncate": "END",
    }, "known and unknown parameters pass through"
    [event] = usage_events(app, account)
    assert (event.status, event.model, event.app_id, event.stream) == ("ok", "test/embed", "search", False)
    assert (event.prompt_tokens, event.completion_tokens, event.cost_micros) == (11, 0, 11)
    assert not event.usage_estimated
    balance, ledger, reserved = money(app, account)
    assert (balance, ledger, reserved) == (10_000_000 - 11, 10_000_000 - 11, 0)
    assert (
        client.get(f"/v1/generation?id={response.headers['x-request-id']}", headers=auth).get_json()["data"]["cost"]
        == 0.000011
    )


@pytest.mark.parametrize("text", ["a string", ["two", "strings"], [1, 2, 3], [[1, 2], [3]]])
def test_every_shape_of_input_goes_through_unchanged(client, auth, upstream, text):
    response = embed(client, auth, input=text)
    assert response.status_code == 200, response.get_json()
    assert upstream.requests_for("embed")[0].body["input"] == text
    assert len(response.get_json()["data"]) == (1 if isinstance(text, str) or isinstance(text[0], int) else 2)


def test_a_lone_surrogate_is_sent_on_as_the_replacement_character(client, auth, upstream):
    body = '{"model": "test/embed", "input": ["cut mid-emoji \\ud83d", "fine"], "user": "\\udc00"}'
    response = client.post("/v1/embeddings", data=body, content_type="application/json", headers=auth)
    assert response.status_code == 200, response.get_json()
    sent = upstream.requests_for("embed")[0].body
    assert sent["input"] == ["cut mid-emoji \ufffd", "fine"] and sent["user"] == "\ufffd"


@pytest.mark.parametrize(
    "change, param",
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": {"text": "x"}}, "input"),
        ({"input": 42}, "input"),
        ({"input": None}, "input"),
        ({"input": ["x", ""]}, "input[1]"),
        ({"input": ["x", 1]}, "input[1]"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": [1, -1]}, "input[1]"),
        ({"input": [1, True]}, "input[1]"),
        ({"input": [1, 2**64]}, "input[1]"),
        ({"input": [1, 2.5]}, "input[1]"),
        ({"input": [[1], []]}, "input[1]"),
        ({"input": [[1], [2, "x"]]}, "input[1][1]"),
        ({"input": [[1], 2]}, "input[1]"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "8"}, "dimensions"),
        ({"dimensions": 2**64}, "dimensions"),
        ({"dimensions": 1.5}, "dimensions"),
        ({"encoding_format": "hex"}, "encoding_format"),
        ({"user": "x" * 257}, "user"),
        ({"user": 7}, "user"),
        ({"model": 7}, "model"),
        ({"model": ""}, "model"),
        ({"models": "test/embed"}, "models"),
        ({"extra": {"deep": [1, 2**70]}}, "extra.deep[1]"),
        ({"extra": nested_lists(70)}, "extra" + "[0]" * 64),
    ],
)
def test_bad_input_is_a_400_naming_the_param(app, client, auth, account, upstream, change, param):
    response = embed(client, auth, **change)
    error = response.get_json()["error"]
    assert response.status_code == 400, error
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert not upstream.seen and not usage_events(app, account)


def test_input_and_model_are_required(client, auth):
    for body, param in (({"model": "test/embed"}, "input"), ({"input": "x"}, "model")):
        assert client.post("/v1/embeddings", json=body, headers=auth).get_json()["error"]["param"] == param
    not_json = client.post("/v1/embeddings", data="[1,", content_type="application/json", headers=auth)
    assert not_json.status_code == 400
    assert client.post("/v1/embeddings", json=["x"], headers=auth).status_code == 400


def test_nulls_of_optional_parameters_are_absent(client, auth, upstream):
    assert embed(client, auth, dimensions=None, encoding_format=None, user=None).status_code == 200
    assert upstream.requests_for("embed")[0].body == {"model": "embed", "input": "Hello there"}


def test_a_chat_model_does_not_embed_nor_an_embedding_model_chat(app, client, auth, account, upstream):
    for response in (
        embed(client, auth, model="test/primary"),
        embed(client, auth, models=["test/embed", "test/primary"]),
        chat(client, auth, model="test/embed"),
        chat(client, auth, model="test/primary", fallback_model="test/echo-embed"),
    ):
        error = response.get_json()["error"]
        assert response.status_code == 400, error
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            "model",
            "operation_not_supported",
        )
    assert "POST /v1/embeddings" in chat(client, auth, model="test/embed").get_json()["error"]["message"]
    assert not upstream.seen and not usage_events(app, account)


def test_an_unknown_model(client, auth):
    error = embed(client, auth, model="nope/nothing").get_json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")


def test_echo_embeds_deterministically_without_a_provider_key(client, auth):
    first = embed(client, auth, model="test/echo-embed", input=["same", "other"]).get_json()
    again = embed(client, auth, model="test/echo-embed", input="same").get_json()
    same, other = (d["embedding"] for d in first["data"])
    assert len(same) == 256 and same == again["data"][0]["embedding"] and same != other
    assert math.isclose(sum(v * v for v in same), 1.0, rel_tol=1e-5)
    assert first["usage"]["prompt_tokens"] == 1 + 2 and first["provider"] == "echo"
    short = embed(client, auth, model="test/echo-embed", input=[[1, 2, 3]], dimensions=8, encoding_format="base64")
    packed = short.get_json()["data"][0]["embedding"]
    as_floats = embed(client, auth, model="test/echo-embed", input=[[1, 2, 3]], dimensions=8).get_json()
    assert decoded(packed) == as_floats["data"][0]["embedding"], "both encodings carry the same vector"
    too_many = embed(client, auth, model="test/echo-embed", dimensions=4096)
    assert too_many.status_code == 400 and "1024" in too_many.get_json()["error"]["message"]


def test_without_upstream_usage_a_local_estimate_is_billed_and_marked(app, client, auth, account, upstream):
    upstream.script("embed", Reply(usage=None))
    answer = embed(client, auth, input=["Hello there", "abcd"]).get_json()
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4, "cost": 0.000004, "estimated": True}
    [event] = usage_events(app, account)
    assert (event.prompt_tokens, event.usage_estimated, event.cost_micros) == (4, True, 4)


def test_estimates_of_input_tokens():
    assert input_estimate(["Hello there", "abcd"]) == 3 + 1 and input_estimate([[5, 6, 7], [8]]) == 4
    # Two bytes of UTF-8 a token: half a character of English (tokenizers average four), a token
    # or more per character of Japanese or emoji, plus the markers of each input.
    assert input_upper_estimate("a b c d " * 100) == 2 + 400
    assert input_upper_estimate(["日本語のテキスト" * 20, "🙂" * 30]) >= 160 + 30 * 2
    assert input_upper_estimate([[1] * 100, [2] * 5]) == 105 + 2 * 2


def test_fallbacks_and_retries_come_with_the_router(app, client, auth, account, upstream):
    upstream.script("embed", Reply(status=503, message="down"))
    response = embed(client, auth, models=["test/embed", "test/embed-backup"])
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["model"] == "test/embed-backup" and answer["usage"]["cost"] == 0.000022  # at $2 per million
    [event] = usage_events(app, account)
    attempts = [(a["model"], a["status"]) for a in event.attempts]
    assert attempts == [("test/embed", 503)] * 3 + [("test/embed-backup", 200)]

    upstream.script("embed", Reply(status=429, retry_after="0"), Reply())
    assert embed(client, auth, fallback_model="test/embed-backup").get_json()["model"] == "test/embed"


@pytest.mark.parametrize(
    "reply, status, kind",
    [
        (Reply(status=500), 502, "upstream_error"),
        (Reply(reset_after=0), 502, "upstream_error"),
        (Reply(wait_s=2.0), 504, "timeout_error"),
    ],
)
def test_upstream_failures(make_app, account, upstream, reply, status, kind):
    app = make_app(UPSTREAM_MAX_RETRIES=0)
    with app.app_context():
        _key, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"])
    upstream.script("embed", reply)
    response = embed(app.test_client(), {"Authorization": f"Bearer {secret}"})
    assert response.status_code == status and response.get_json()["error"]["type"] == kind
    [event] = usage_events(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", status, 0)
    assert money(app, account)[2] == 0


def test_the_worst_case_is_reserved_before_any_upstream_call(app, client, auth, account, upstream):
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, 1_000 - acct.balance_micros, "drain", f"test:{uuid.uuid4()}")  # 1,000 micro-USD left
    assert embed(client, auth, input="x" * 1_000).status_code == 200  # at most ~500 tokens: fits
    response = embed(client, auth, input=["x" * 1_000] * 3)  # up to ~1,500 tokens at $1/M: does not
    assert response.status_code == 402 and response.headers["x-should-retry"] == "false"
    assert len(upstream.requests_for("embed")) == 1
    assert [e.status for e in usage_events(app, account)] == ["ok", "refused"]


def test_plans_keys_and_rate_limits_apply(app, client, auth, account, upstream):
    set_plan(app, account, "echo-only")
    refused = embed(client, auth)
    assert refused.status_code == 403 and refused.get_json()["error"]["type"] == "invalid_subscription_plan"
    set_plan(app, account, "tiny-tokens")  # 20 tokens a minute; each answer reports 11
    assert [embed(client, auth).status_code for _ in range(3)] == [200, 200, 429]
    assert len(upstream.requests_for("embed")) == 2
    with app.app_context():
        _key, management = keys.create_key(
            db.session.get(Account, account), app.config["SECRET_KEY"], name="ops", kind=MANAGEMENT
        )
    assert embed(client, {"Authorization": f"Bearer {management}"}).status_code == 403
    assert embed(client, {}).status_code == 401


def test_listed_in_usage_like_chat(client, auth, upstream):
    assert embed(client, {**auth, "X-App-ID": "search"}).status_code == 200
    assert chat(client, {**auth, "X-App-ID": "search"}, model="test/primary").status_code == 200
    rows = {row["group"]: row for row in client.get("/v1/usage?group_by=model", headers=auth).get_json()["data"]}
    embedded = rows["test/embed"]
    assert (embedded["requests"], embedded["prompt_tokens"], embedded["completion_tokens"]) == (1, 11, 0)
    assert embedded["cost"] == 0.000011 and rows["test/primary"]["requests"] == 1
    [search] = client.get("/v1/usage?group_by=app", headers=auth).get_json()["data"]
    assert (search["group"], search["requests"]) == ("search", 2)


def test_models_show_their_type(client, auth):
    models = {m["id"]: m for m in client.get("/v1/models", headers=auth).get_json()["data"]}
    assert models["test/primary"]["type"] == "chat" and models["test/embed"]["type"] == "embedding"
    embedding = client.get("/v1/models/test/embed", headers=auth).get_json()
    assert (embedding["type"], embedding["max_output_tokens"], embedding["pricing"]["output_usd_per_mtok"]) == (
        "embedding",
        None,
        0.0,
    )


# The official openai SDK, unmodified but for its base URL, against a live gateway.


@pytest.fixture
def sdk(live_server, api_key):
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key=api_key, max_retries=0, timeout=10)


def test_sdk_embeddings_are_billed_in_usage(sdk, live_server, api_key, upstream):
    # The SDK asks for base64 unless told otherwise, and decodes it back to floats.
    result = sdk.embeddings.create(
        model="test/embed", input=["first", "second"], dimensions=4, extra_headers={"X-App-ID": "sdk-app"}
    )
    assert upstream.requests_for("embed")[0].body["encoding_format"] == "base64"
    assert [len(item.embedding) for item in result.data] == [4, 4]
    assert result.data[1].embedding == pytest.approx([((6 + 1 + d) % 7) / 7 for d in range(4)])
    assert (result.model, result.usage.prompt_tokens, result.usage.total_tokens) == ("test/embed", 11, 11)
    as_floats = sdk.embeddings.create(model="test/embed", input="first", dimensions=4, encoding_format="float")
    assert as_floats.data[0].embedding == pytest.approx([((5 + d) % 7) / 7 for d in range(4)])

    usage = requests.get(
        f"{live_server}/v1/usage?group_by=app,model", timeout=10, headers={"Authorization": f"Bearer {api_key}"}
    ).json()["data"]
    rows = {(row["app"], row["model"]): row for row in usage}
    assert rows[("sdk-app", "test/embed")]["requests"] == 1
    assert rows[("sdk-app", "test/embed")]["cost"] == 0.000011
    assert rows[("unknown", "test/embed")]["prompt_tokens"] == 11


def test_sdk_echo_embeddings(sdk):
    result = sdk.embeddings.create(model="test/echo-embed", input="try me")
    assert len(result.data[0].embedding) == 256 and result.usage.prompt_tokens == 2
    assert sdk.embeddings.create(model="test/echo-embed", input="try me").data[0].embedding == result.data[0].embedding


def test_sdk_errors(sdk):
    with pytest.raises(openai.BadRequestError) as wrong_type:
        sdk.embeddings.create(model="test/primary", input="x")
    assert (wrong_type.value.code, wrong_type.value.param) == ("operation_not_supported", "model")
    with pytest.raises(openai.BadRequestError) as empty:
        sdk.embeddings.create(model="test/embed", input=[])
    assert empty.value.param == "input"
