"""Reservations left open by a request that died mid-way are released, unbilled, by the CLI."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from lunos.extensions import db
from lunos.models import ApiKey, Reservation
from lunos.services import credits, keys
from lunos.services.batching import GroupCommit
from tests.conftest import money, usage_events


def test_release_reservations_frees_stale_holds_only(app, account, api_key):
    with app.app_context():
        db.session.execute(update(ApiKey).values(credit_limit_micros=1_000_000))
        db.session.commit()
        key = keys.authenticate(api_key, app.config["SECRET_KEY"])
        credits.reserve(account, 700, "died-mid-way", key)
        credits.reserve(account, 300, "still-running")
        # Both began two hours ago; the worker of one died then, the other's still proves itself alive.
        two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
        db.session.execute(update(Reservation).values(created_at=two_hours_ago))
        db.session.execute(
            update(Reservation).where(Reservation.id == "died-mid-way").values(heartbeat_at=two_hours_ago)
        )
        db.session.commit()
    assert money(app, account)[2] == 1000

    result = app.test_cli_runner().invoke(args=["lunos", "release-reservations", "--older-than-minutes", "60"])
    assert result.exit_code == 0 and "released 1 reservation" in result.output
    balance, ledger, reserved = money(app, account)
    assert reserved == 300 and balance == ledger == 10_000_000, "released unbilled; the live one kept"
    with app.app_context():
        assert db.session.get(ApiKey, key.id).reserved_micros == 0, "the key's hold is released too"
        assert credits.settle("still-running", account, event("still-running", account, key.id, 120))
        assert not credits.settle("still-running", account, event("still-running", account, key.id, 120)), (
            "a second settlement writes nothing"
        )
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000 - 120


def event(request_id, account, key_id, cost):
    return {
        "id": request_id,
        "account_id": account,
        "key_id": key_id,
        "app_id": "unknown",
        "requested_model": "test/echo",
        "model": "test/echo",
        "provider": "echo",
        "stream": False,
        "status": "ok",
        "http_status": 200,
        "error": None,
        "usage_estimated": False,
        "cost_micros": cost,
        "latency_ms": 5,
        "ttft_ms": 5,
        "attempts": [],
        "prompt_tokens": 40,
        "completion_tokens": 40,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 0,
    }


def test_the_heartbeat_keeps_a_long_request_from_being_released(app, account):
    with app.app_context():
        credits.reserve(account, 500, "long-stream")
        db.session.execute(
            update(Reservation).values(
                created_at=datetime.now(UTC) - timedelta(minutes=5),
                heartbeat_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
        db.session.commit()
        credits.heartbeat()  # its worker is alive, and the request not settled
    result = app.test_cli_runner().invoke(args=["lunos", "release-reservations", "--older-than-minutes", "1"])
    assert "released 0 reservation" in result.output
    assert money(app, account)[2] == 500


def test_a_request_whose_hold_was_released_is_still_billed_once(app, account, api_key):
    with app.app_context():
        db.session.execute(update(ApiKey).values(credit_limit_micros=1_000_000))
        db.session.commit()
        key = keys.authenticate(api_key, app.config["SECRET_KEY"])
        credits.reserve(account, 700, "outlived-its-hold", key)
        db.session.execute(update(Reservation).values(heartbeat_at=datetime.now(UTC) - timedelta(hours=2)))
        db.session.commit()
        assert credits.release_stale(timedelta(minutes=1)) == 1
        assert credits.settle("outlived-its-hold", account, event("outlived-its-hold", account, key.id, 650))
        assert not credits.settle("outlived-its-hold", account, event("outlived-its-hold", account, key.id, 650))
        assert db.session.get(ApiKey, key.id).spent_micros == 650
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000 - 650


class CommitAnswerLost(OperationalError):
    """What psycopg reports when the connection drops while the COMMIT's answer is on its way."""

    def __init__(self):
        super().__init__("COMMIT", {}, Exception("server closed the connection unexpectedly"))


def test_a_hold_whose_commit_answer_was_lost_is_released_by_the_requests_settlement(
    app, client, auth, account, monkeypatch
):
    def reserve_then_lose_the_answer(items):
        credits.reserve_many(items)  # committed
        raise CommitAnswerLost()

    monkeypatch.setitem(app.extensions, "lunos-reservations", GroupCommit(reserve_then_lose_the_answer))
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        json={"model": "test/echo", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["type"] == "service_unavailable"
    [event] = usage_events(app, account)
    assert (event.status, event.http_status, event.cost_micros) == ("refused", 503, 0)
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000, "the hold that did land is released, unbilled"
    assert not app.extensions["lunos-holds"]


def test_a_hold_no_request_of_the_worker_will_settle_is_not_kept_alive(app, account):
    with app.app_context():
        credits.reserve(account, 400, "settling")
        credits.reserve(account, 600, "orphan")
        app.extensions["lunos-holds"].discard("orphan")  # its request is gone (its answer was lost)
        db.session.execute(update(Reservation).values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
        db.session.commit()
        credits.heartbeat()
        assert credits.release_stale(timedelta(minutes=1)) == 1
        assert credits.settle("settling", account, event("settling", account, None, 100))
        assert not app.extensions["lunos-holds"]
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000 - 100


def test_a_settlement_that_fails_for_any_reason_is_kept_and_lands_once(app, client, auth, account, monkeypatch):
    real_settle, calls = credits.settle, []

    def interrupted(*args):
        calls.append(args)
        raise RuntimeError("the batch was interrupted")  # what a follower sees when its leader is killed

    monkeypatch.setattr(credits, "settle", interrupted)
    response = client.post(
        "/v1/chat/completions",
        headers=auth,
        json={"model": "test/echo", "messages": [{"role": "user", "content": "hello there"}]},
    )
    assert response.status_code == 200 and calls, "the answer went out; its settlement failed"
    monkeypatch.setattr(credits, "settle", real_settle)
    pending = app.extensions["lunos-pending"]
    assert pending.drain(deadline_s=10) and len(pending) == 0
    [event] = usage_events(app, account)
    assert event.status == "ok" and event.cost_micros > 0
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000 - event.cost_micros, "billed once"
    assert not app.extensions["lunos-holds"]
