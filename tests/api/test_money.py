"""Metering and credits through the endpoint: every request metered once, the ledger exact."""

import uuid
from datetime import UTC

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.money import MICROS_PER_USD as MICRO_USD
from lunos.services import accounts, keys
from tests.api.test_chat import chat, sse_events
from tests.conftest import money, set_plan, usage_events
from tests.upstream import Reply


def assert_books_balance(app, account):
    balance, ledger, reserved = money(app, account)
    assert balance == ledger, "the cached balance equals the sum of the ledger"
    assert reserved == 0, "no reservation left open"
    assert balance >= 0


def test_success_writes_one_event_and_debits_its_cost(app, client, auth, account, upstream):
    before, _, _ = money(app, account)
    response = chat(client, {**auth, "X-App-ID": "billing-app"}, model="test/primary")
    answer = response.get_json()
    [event] = usage_events(app, account)
    assert event.id in answer["id"]
    assert (event.status, event.http_status, event.app_id) == ("ok", 200, "billing-app")
    assert (event.model, event.provider, event.requested_model) == ("test/primary", "fake", "test/primary")
    assert (event.prompt_tokens, event.completion_tokens, event.usage_estimated) == (11, 7, False)
    assert event.cost_micros == 11 * 1 + 7 * 2
    assert event.attempts[0]["status"] == 200
    after, _, _ = money(app, account)
    assert before - after == event.cost_micros
    assert_books_balance(app, account)


def test_app_id_defaults_to_unknown(app, client, auth, account):
    chat(client, auth)
    assert usage_events(app, account)[0].app_id == "unknown"


def test_failed_request_is_metered_but_not_billed(app, client, auth, account, upstream):
    upstream.script("primary", Reply(status=500, message="down"))
    before, _, _ = money(app, account)
    assert chat(client, auth, model="test/primary").status_code == 502
    [event] = usage_events(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("upstream_error", 502, 0)
    assert len(event.attempts) == 3 and "down" in event.error
    assert money(app, account)[0] == before
    assert_books_balance(app, account)


def test_missing_upstream_usage_is_estimated_and_marked(app, client, auth, account, upstream):
    upstream.script("primary", Reply(usage=None, words=("twelve characters",)))
    answer = chat(client, auth, model="test/primary").get_json()
    [event] = usage_events(app, account)
    assert event.usage_estimated and event.completion_tokens == answer["usage"]["completion_tokens"] > 0
    assert event.cost_micros > 0
    assert_books_balance(app, account)


def test_stream_bills_upstream_usage_and_reports_cost(app, client, auth, account, upstream):
    upstream.script("primary", Reply(usage=(30, 10)))
    events = sse_events(chat(client, auth, model="test/primary", stream=True, stream_options={"include_usage": True}))
    assert events[-2]["usage"]["cost"] == pytest.approx((30 * 1 + 10 * 2) / MICRO_USD)
    [event] = usage_events(app, account)
    assert (event.status, event.prompt_tokens, event.completion_tokens, event.stream) == ("ok", 30, 10, True)
    assert event.ttft_ms is not None
    assert_books_balance(app, account)


def test_a_finished_stream_is_settled_once_when_the_server_closes_it(app, client, auth, account, upstream):
    """The client gets [DONE] without waiting for the settlement; the close that follows settles."""
    upstream.script("primary", Reply(usage=(30, 10)))
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        buffered=False,
        json={"model": "test/primary", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    body = b"".join(response.response)
    assert body.endswith(b"data: [DONE]\n\n")
    assert usage_events(app, account) == [], "not settled before the last byte went out"
    response.close()
    response.close()
    [event] = usage_events(app, account)
    assert (event.status, event.prompt_tokens, event.completion_tokens) == ("ok", 30, 10)
    assert_books_balance(app, account)


def test_client_disconnect_mid_stream_bills_what_was_produced_once(app, client, auth, account, upstream):
    upstream.script("primary", Reply(words=tuple(f" word{i}" for i in range(60)), chunk_delay_s=0.02))
    before, _, _ = money(app, account)
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        buffered=False,
        json={
            "model": "test/primary",
            "stream": True,
            "user": "leaver-billing",
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    body = iter(response.response)
    next(body), next(body)
    response.close()
    response.close()  # a second close must not bill again
    assert upstream.wait_disconnect("leaver-billing")
    [event] = usage_events(app, account)
    assert event.status == "client_disconnected" and event.usage_estimated
    assert 0 < event.completion_tokens < 60 * 2, "what was produced, not the whole answer"
    assert event.cost_micros > 0 and before - money(app, account)[0] == event.cost_micros
    assert_books_balance(app, account)


def test_upstream_break_after_output_bills_what_was_produced(app, client, auth, account, upstream):
    upstream.script("primary", Reply(words=("alpha", " beta", " gamma"), reset_after=2))
    events = sse_events(chat(client, auth, model="test/primary", stream=True))
    assert "error" in events[-1]
    [event] = usage_events(app, account)
    assert event.status == "upstream_error" and event.completion_tokens > 0 and event.cost_micros > 0
    assert_books_balance(app, account)


def test_insufficient_credits_is_402_without_upstream_call(app, client, auth, account, upstream):
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, -acct.balance_micros + 100, "drain", f"test:{uuid.uuid4()}")
    response = chat(client, auth, model="test/primary", max_tokens=1000)
    assert response.status_code == 402
    assert response.headers["x-should-retry"] == "false"
    assert response.get_json()["error"]["type"] == "insufficient_credits"
    assert not upstream.seen, "no upstream call"
    [event] = usage_events(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("refused", 402, 0)
    assert_books_balance(app, account)


def test_reservation_covers_the_worst_case(app, client, auth, account):
    # test/primary: $1/M in, $2/M out. "hi" reserves 5 prompt tokens; max_tokens 50 -> 5 + 100 micro-USD.
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, -acct.balance_micros + 104, "drain", f"test:{uuid.uuid4()}")
    body = {"model": "test/primary", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 402
    with app.app_context():
        accounts.grant(db.session.get(Account, account), 1, "one more", f"test:{uuid.uuid4()}")
    assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200


def test_balance_credits_generation_and_key_endpoints(app, client, auth, account):
    answer = chat(client, auth, model="test/primary").get_json()
    balance = client.get("/v1/balance", headers=auth).get_json()
    assert balance["balance"] == pytest.approx(10 - 25 / MICRO_USD)
    assert balance["reserved"] == 0 and balance["available"] == balance["balance"]
    assert balance["low_balance"] is False
    credits = client.get("/v1/credits", headers=auth).get_json()["data"]
    assert credits == {"total_credits": 10.0, "total_usage": 25 / MICRO_USD}
    generation = client.get(f"/v1/generation?id={answer['id']}", headers=auth).get_json()["data"]
    assert generation["model"] == "test/primary" and generation["cost"] == 25 / MICRO_USD
    assert generation["prompt_tokens"] == 11 and generation["attempts"][0]["model"] == "test/primary"
    key = client.get("/v1/key", headers=auth).get_json()["data"]
    assert key["usage"] == 25 / MICRO_USD and key["plan"] == "free"
    assert key["rate_limit"]["requests_per_minute"] == 10000


def test_generation_of_another_account_is_404(app, client, auth):
    answer = chat(client, auth).get_json()
    with app.app_context():
        other = accounts.create_account("other", 1_000_000)
        _, secret = keys.create_key(other, app.config["SECRET_KEY"])
    response = client.get(f"/v1/generation?id={answer['id']}", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 404


def test_grant_credits_cli_writes_an_adjustment(app, account):
    result = app.test_cli_runner().invoke(
        args=["lunos", "grant-credits", "--account", "acme", "--usd", "2.50", "--reason", "goodwill"]
    )
    assert result.exit_code == 0, result.output
    balance, ledger, _ = money(app, account)
    assert balance == ledger == 12_500_000
    bad = app.test_cli_runner().invoke(
        args=["lunos", "grant-credits", "--account", "acme", "--usd", "1", "--reason", " "]
    )
    assert bad.exit_code != 0


def test_plan_without_api_access_is_403_subscription_required(app, client, auth, account):
    set_plan(app, account, "dashboard-only")
    response = chat(client, auth)
    assert response.status_code == 403
    assert response.get_json()["error"]["type"] == "subscription_required"


def test_model_outside_plan_is_403_invalid_subscription_plan(app, client, auth, account, upstream):
    set_plan(app, account, "echo-only")
    assert chat(client, auth, model="test/echo").status_code == 200
    for body in ({"model": "test/primary"}, {"model": "test/echo", "fallback_model": "test/primary"}):
        response = chat(client, auth, **body)
        assert response.status_code == 403
        assert response.get_json()["error"]["type"] == "invalid_subscription_plan"
    assert not upstream.seen


def test_past_due_beyond_grace_falls_back_to_default_plan(app, client, auth, account):
    from datetime import datetime, timedelta

    set_plan(
        app,
        account,
        "dashboard-only",
        subscription_status="past_due",
        past_due_since=datetime.now(UTC) - timedelta(days=1),
    )
    assert chat(client, auth).status_code == 403, "within the grace period the plan still applies"
    set_plan(
        app,
        account,
        "dashboard-only",
        subscription_status="past_due",
        past_due_since=datetime.now(UTC) - timedelta(days=30),
    )
    assert chat(client, auth).status_code == 200, "restricted: the default plan applies"


@pytest.mark.parametrize(
    "limits", [{"max_tokens": 900, "max_completion_tokens": 100}, {"max_tokens": 100, "max_completion_tokens": 900}]
)
def test_the_reservation_covers_the_larger_of_the_two_output_limits(app, client, auth, account, upstream, limits):
    # The account can pay for 100 output tokens, not for 900: whichever field says 900 is refused.
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, 1_000 - acct.balance_micros, "room for 100 output tokens, not 900", f"t:{uuid.uuid4()}")
    response = chat(client, auth, model="test/primary", **limits)
    assert response.status_code == 402
    assert upstream.requests_for("primary") == []


def test_an_account_that_cannot_pay_is_refused_before_its_body_is_validated(app, client, auth, account, upstream):
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, -acct.balance_micros, "nothing left", f"t:{uuid.uuid4()}")
    many = [{"role": "user", "content": "x"}] * 5000 + [{"role": "robot", "content": "y"}]
    response = chat(client, auth, model="test/primary", messages=many)
    assert response.status_code == 402, "refused on the balance, before 5,001 messages are checked"
    assert response.headers["x-should-retry"] == "false"
    assert usage_events(app, account) == [] and upstream.seen == []
