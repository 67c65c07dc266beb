"""Reservations left open by a request that died mid-way are released, unbilled, by the CLI."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from lunos.extensions import db
from lunos.models import ApiKey, Reservation
from lunos.services import credits, keys
from tests.conftest import money


def test_release_reservations_frees_stale_holds_only(app, account, api_key):
    with app.app_context():
        db.session.execute(update(ApiKey).values(credit_limit_micros=1_000_000))
        db.session.commit()
        key = keys.authenticate(api_key, app.config["SECRET_KEY"])
        credits.reserve(account, 700, "died-mid-way", key)
        credits.reserve(account, 300, "still-running")
        db.session.execute(update(Reservation).where(Reservation.id == "died-mid-way")
                           .values(created_at=datetime.now(timezone.utc) - timedelta(hours=2)))
        db.session.commit()
    assert money(app, account)[2] == 1000

    result = app.test_cli_runner().invoke(args=["lunos", "release-reservations", "--older-than-minutes", "60"])
    assert result.exit_code == 0 and "released 1 reservation" in result.output
    balance, ledger, reserved = money(app, account)
    assert reserved == 300 and balance == ledger == 10_000_000, "released unbilled; the live one kept"
    with app.app_context():
        assert db.session.get(ApiKey, key.id).reserved_micros == 0, "the key's hold is released too"
        assert credits.settle("still-running", account, {
            "id": "still-running", "account_id": account, "key_id": key.id, "app_id": "unknown",
            "requested_model": "test/echo", "model": "test/echo", "provider": "echo", "stream": False,
            "status": "ok", "http_status": 200, "error": None, "usage_estimated": False, "cost_micros": 120,
            "latency_ms": 5, "ttft_ms": 5, "attempts": [], "prompt_tokens": 40, "completion_tokens": 40,
            "cached_tokens": 0, "reasoning_tokens": 0})
        assert not credits.settle("still-running", account, {}), "a second settlement writes nothing"
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger == 10_000_000 - 120
