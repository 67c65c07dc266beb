"""Settlements sharing one transaction: each charged as if settled alone, in order, none twice."""

import sqlalchemy as sa

from lunos.extensions import db
from lunos.models import ApiKey, UsageHourly
from lunos.services import credits, keys
from tests.conftest import money, usage_events


def event(request_id, account, cost, *, status="ok"):
    return {
        "id": request_id,
        "account_id": account,
        "key_id": None,
        "app_id": "unknown",
        "requested_model": "test/echo",
        "model": "test/echo",
        "provider": "echo",
        "stream": False,
        "status": status,
        "http_status": 200,
        "error": None,
        "usage_estimated": False,
        "cost_micros": cost,
        "latency_ms": 5,
        "ttft_ms": 5,
        "attempts": [],
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 0,
    }


def charged(app, account):
    return {e.id: (e.cost_micros - e.unbilled_micros, e.unbilled_micros) for e in usage_events(app, account)}


def test_a_batch_charges_each_in_turn_and_never_below_zero(app, account):
    with app.app_context():  # $10: r1 and r2 hold $9 of it, $1 is free
        credits.reserve(account, 6_000_000, "r1")
        credits.reserve(account, 3_000_000, "r2")
        results = credits.settle_many(
            [
                ("r1", account, event("r1", account, 8_000_000), None),
                ("r2", account, event("r2", account, 3_500_000), None),
                ("r3", account, event("r3", account, 1_000_000), None),
            ]
        )
    # Both overran their holds: r1 takes the free dollar too, so r2 finds none left; the rest of
    # each is unbilled. r3 held nothing (its hold released as stale, say): still written, and
    # charged what is left, nothing.
    assert results == [True, True, True]
    assert charged(app, account) == {"r1": (7_000_000, 1_000_000), "r2": (3_000_000, 500_000), "r3": (0, 1_000_000)}
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 0


def test_one_reservation_twice_in_a_batch_settles_once(app, account):
    with app.app_context():
        credits.reserve(account, 1_000_000, "twice")
        results = credits.settle_many(
            [
                ("twice", account, event("twice", account, 400_000), None),
                ("twice", account, event("twice", account, 400_000), None),
            ]
        )
        assert results == [True, False]
        assert credits.settle_many([("twice", account, event("twice", account, 400_000), None)]) == [False]
    assert money(app, account) == (9_600_000, 9_600_000, 0)


def test_an_event_settled_already_spoils_only_itself(app, account):
    with app.app_context():
        credits.settle_many([(None, account, event("refused-once", account, 0, status="refused"), None)])
        credits.reserve(account, 1_000_000, "fine")
        results = credits.settle_many(
            [
                (None, account, event("refused-once", account, 0, status="refused"), None),
                ("fine", account, event("fine", account, 300_000), None),
                (None, account, event("refused-twice", account, 0, status="refused"), None),
                (None, account, event("refused-twice", account, 0, status="refused"), None),
            ]
        )
    assert results == [False, True, True, False]
    assert money(app, account) == (9_700_000, 9_700_000, 0)
    assert sorted(charged(app, account)) == ["fine", "refused-once", "refused-twice"]


def test_a_batch_adds_to_its_hours_rollup_row_once_per_row(app, account):
    with app.app_context():
        for name in ("a", "b", "c"):
            credits.reserve(account, 100_000, name)
        credits.settle_many(
            [
                (name, account, event(name, account, 1_000, status=status), None)
                for name, status in (("a", "ok"), ("b", "ok"), ("c", "upstream_error"))
            ]
        )
        row = db.session.execute(
            sa.select(
                UsageHourly.requests, UsageHourly.errors, UsageHourly.cost_micros, UsageHourly.prompt_tokens
            ).where(UsageHourly.account_id == account)
        ).one()
    assert tuple(row) == (3, 1, 3_000, 30)


def test_reservations_in_one_batch_each_see_the_ones_before(app, account, api_key):
    with app.app_context():
        db.session.execute(sa.update(ApiKey).values(credit_limit_micros=5_000_000))
        db.session.commit()
        key = keys.authenticate(api_key, app.config["SECRET_KEY"])
        outcomes = credits.reserve_many(
            [
                (account, 6_000_000, "a", None),
                (account, 3_000_000, "b", None),
                (account, 2_000_000, "c", None),
                (account, 1_000_000, "d", None),
                (account, 500_000, "e", key),
            ]
        )
        key_reserved = db.session.get(ApiKey, key.id).reserved_micros
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "NoneType",
        "NoneType",
        "InsufficientCredits",
        "NoneType",
        "InsufficientCredits",
    ]
    assert money(app, account) == (10_000_000, 10_000_000, 10_000_000)
    assert key_reserved == 0, "a key's hold is given back when the account cannot pay"
