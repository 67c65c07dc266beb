"""Reservations and settlements take their row locks in one order (accounts, then keys), so
concurrent requests on a key with a credit limit never deadlock: on PostgreSQL, against real
gunicorn workers, one instance and two."""

import threading
import time

import pytest
import requests
import sqlalchemy as sa

from lunos.extensions import db
from lunos.models import ApiKey
from tests.conftest import money, usage_events
from tests.upstream import Reply

BODY = {"model": "test/primary", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row-lock order under concurrency is checked on PostgreSQL")


def _limit_key(app, usd_micros):
    with app.app_context():
        db.session.execute(sa.update(ApiKey).values(credit_limit_micros=usd_micros))
        db.session.commit()


@pytest.mark.parametrize("instances", [1, 2])
def test_concurrent_requests_on_a_limited_key_all_succeed(
    postgres_only, start_gunicorn, app, api_key, account, upstream, instances
):
    _limit_key(app, 5_000_000)  # far above what 40 requests cost: every one must be admitted
    bases = [start_gunicorn(workers=2) for _ in range(instances)]
    upstream.script("primary", Reply(wait_s=0.02))
    codes, lock = [], threading.Lock()

    def client(number):
        session = requests.Session()
        for i in range(4):
            response = session.post(
                f"{bases[(number + i) % len(bases)]}/v1/chat/completions",
                json=BODY,
                timeout=30,
                headers={"Authorization": f"Bearer {api_key}", "Connection": "close"},
            )
            with lock:
                codes.append(response.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes.count(200) == 40, codes
    deadline = time.monotonic() + 10  # the last answers settle just after they went out
    while len(usage_events(app, account)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = usage_events(app, account)
    assert len(events) == 40 and {e.status for e in events} == {"ok"}
    balance, ledger, reserved = money(app, account)
    assert balance == ledger and reserved == 0
    with app.app_context():
        key = db.session.scalars(sa.select(ApiKey)).one()
        assert key.reserved_micros == 0 and key.spent_micros == sum(e.cost_micros for e in events)
