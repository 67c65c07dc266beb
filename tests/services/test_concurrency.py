"""Money under concurrency, on PostgreSQL: reservations never admit more than the balance covers."""

import threading
import uuid

import pytest
import requests

from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account
from lunos.services import accounts
from lunos.services.chat import worst_case_micros
from tests.conftest import money
from tests.upstream import Reply

BODY = {"model": "test/primary", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the concurrency invariant is checked on PostgreSQL")


def test_fifty_concurrent_requests_admit_at_most_twenty(postgres_only, app, live_server, api_key, account, upstream):
    with app.app_context():
        gateway = current_gateway()
        worst = worst_case_micros(gateway.catalog.find("test/primary").endpoints, BODY)
        acct = db.session.get(Account, account)
        accounts.grant(acct, 20 * worst - acct.balance_micros, "exactly twenty", f"test:{uuid.uuid4()}")
    upstream.script("primary", Reply(wait_s=0.5))  # every request is in flight at once
    codes, start = [], threading.Barrier(50)

    def call():
        start.wait()
        codes.append(
            requests.post(
                f"{live_server}/v1/chat/completions",
                json=BODY,
                timeout=30,
                headers={"Authorization": f"Bearer {api_key}"},
            ).status_code
        )

    threads = [threading.Thread(target=call) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted = codes.count(200)
    assert sorted(set(codes)) == [200, 402], codes
    assert 1 <= admitted <= 20
    balance, ledger, reserved = money(app, account)
    assert balance >= 0 and reserved == 0
    assert balance == ledger, "the cached balance equals the sum of the ledger"
    assert balance == 20 * worst - admitted * (11 * 1 + 7 * 2)
