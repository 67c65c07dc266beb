"""Leases (services/leases.py): requests admitted in memory against a share of the balance held
once, with the books exact at every step: the account's reserved amount is the sum of its
reservations' rows, the cached balance the ledger's sum."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
import requests

from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account
from lunos.services import accounts, credits
from lunos.services.chat import worst_case_micros
from lunos.services.leases import LEASE_MIN_REQUESTS, LEASE_SHARE
from tests.api.test_chat import chat
from tests.conftest import money, reservations, usage_events
from tests.services.test_reservations import event
from tests.upstream import Reply

BODY = {"model": "test/primary", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
COST = 11 * 1 + 7 * 2  # what the fake upstream's answer costs on test/primary


@pytest.fixture
def app(make_app):
    return make_app(LEASE_S=2.0)


def worst(app):
    with app.app_context():
        return worst_case_micros(current_gateway().catalog.find("test/primary").endpoints, BODY)


def assert_books(app, account):
    balance, ledger, reserved = money(app, account)
    assert balance == ledger, "the cached balance equals the sum of the ledger"
    assert reserved == sum(reservations(app, account).values()), "the reserved amount is what the rows hold"
    assert 0 <= reserved <= balance
    return balance, reserved


def set_balance(app, account, micros):
    with app.app_context():
        acct = db.session.get(Account, account)
        accounts.grant(acct, micros - acct.balance_micros, "set for the test", f"test:{uuid.uuid4()}")


def give_back_all(app):
    with app.app_context():
        app.extensions["lunos-leases"].give_back_all()


def test_requests_after_the_first_are_admitted_on_its_lease(app, client, auth, account):
    before, _, _ = money(app, account)
    for _ in range(10):
        assert chat(client, auth, **BODY).status_code == 200
    [(lease_id, amount)] = reservations(app, account).items()
    assert lease_id.startswith("lease:"), "one lease, no reservation of a request's own"
    assert amount == LEASE_MIN_REQUESTS * worst(app) - 10 * COST, "the lease paid for each, and holds the rest"
    balance, reserved = assert_books(app, account)
    assert before - balance == 10 * COST and reserved == amount
    assert [e.cost_micros for e in usage_events(app, account)] == [COST] * 10
    assert {e.unbilled_micros for e in usage_events(app, account)} == {0}

    give_back_all(app)
    assert reservations(app, account) == {} and money(app, account) == (balance, balance, 0), "all given back"


def test_a_lease_holds_at_most_a_share_of_what_is_available(app, client, auth, account):
    set_balance(app, account, 10 * worst(app))
    assert chat(client, auth, **BODY).status_code == 200
    [amount] = reservations(app, account).values()
    assert amount == 10 * worst(app) // LEASE_SHARE - COST


def test_a_low_account_is_refused_only_when_it_cannot_pay(app, client, auth, account):
    """One worker: leases, then the request's own reservations near the end, given back first,
    so the last request admitted is the one the balance could still cover."""
    set_balance(app, account, 3 * worst(app) + COST)
    codes = [chat(client, auth, **BODY).status_code for _ in range(200)]
    admitted = codes.index(402)
    assert set(codes[:admitted]) == {200} and set(codes[admitted:]) == {402}
    balance, reserved = assert_books(app, account)
    assert reserved == 0 and reservations(app, account) == {}, "a refused lease gives back what the worker leased"
    assert balance < worst(app) <= balance + COST, "refused only once the worst case could not be covered"
    assert balance == 3 * worst(app) + COST - admitted * COST


def test_a_spent_lease_is_replaced_by_one_sized_to_the_demand(app, client, auth, account):
    first = LEASE_MIN_REQUESTS * worst(app)
    spent = (first - worst(app)) // COST + 1  # requests until the first lease cannot admit another
    for _ in range(spent + 1):
        assert chat(client, auth, **BODY).status_code == 200
    [(lease_id, amount)] = reservations(app, account).items()
    assert lease_id.endswith(":2"), "the first, spent down with nothing in flight, was given back"
    assert amount > first, "sized to what the first served, per second"
    assert_books(app, account)


def test_an_overdrawn_account_stops_admitting_on_its_lease(app, client, auth, account):
    assert chat(client, auth, **BODY).status_code == 200
    balance, reserved = assert_books(app, account)
    left = worst(app) // 2  # under what the lease holds, and under a request's worst case
    with app.app_context():  # a refund takes back all but that
        accounts.grant(db.session.get(Account, account), -(balance - left), "refund", "test:refund")
    response = chat(client, auth, **BODY)
    assert response.status_code == 402 and response.get_json()["error"]["type"] == "insufficient_credits"
    assert reservations(app, account) == {}, "the lease was given back"
    assert money(app, account) == (left, left, 0)


def test_a_lease_freed_by_release_reservations_is_not_used_again(app, client, auth, account):
    assert chat(client, auth, **BODY).status_code == 200
    [old] = reservations(app, account)
    # Its worker looked dead (no heartbeat): the CLI frees the lease while a request runs on it.
    with app.app_context():
        lease_id = app.extensions["lunos-leases"].admit(account, worst(app), "in-flight")
        assert lease_id == old
        assert credits.release_stale(older_than=timedelta(seconds=-1)) == 1
        assert credits.settle(lease_id, account, event("in-flight", account, None, COST), worst(app))
    assert reservations(app, account) == {}
    balance, _ = assert_books(app, account)
    [charged] = [e for e in usage_events(app, account) if e.id == "in-flight"]
    assert (charged.cost_micros, charged.unbilled_micros) == (COST, 0), "billed from the balance"
    assert chat(client, auth, **BODY).status_code == 200
    [new] = reservations(app, account)
    assert new != old, "a new lease, not the freed one"
    assert_books(app, account)


def test_requests_waiting_for_a_lease_that_failed_go_their_own_way(app, account, monkeypatch):
    """A lease that cannot be taken (the database is away, say) fails its request, and those
    that waited for it hold their own reservations at once instead of each trying to take the
    next lease after the one before it failed."""
    leases, tried = app.extensions["lunos-leases"], []

    def away(*args):
        tried.append(args)
        time.sleep(0.2)  # the waiters queue behind it meanwhile
        raise ConnectionError("database away")

    monkeypatch.setattr(credits, "take_lease", away)
    outcomes = []

    def admit(request_id):
        with app.app_context():
            try:
                outcomes.append(leases.admit(account, worst(app), request_id))
            except ConnectionError as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=admit, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes, key=str) == [None, None, None, "database away"]
    assert len(tried) == 1, "one attempt at the lease, not one per waiter"


def test_a_settlement_kept_in_the_spool_keeps_its_part_at_shutdown(app, client, auth, account):
    assert chat(client, auth, **BODY).status_code == 200
    with app.app_context():
        leases = app.extensions["lunos-leases"]
        lease_id = leases.admit(account, worst(app), "pending")
        give_back_all(app)  # "pending" has not settled: its worst case stays held for it
        assert reservations(app, account) == {lease_id: worst(app)}
        assert_books(app, account)
        assert credits.settle(lease_id, account, event("pending", account, None, COST), worst(app))
    assert reservations(app, account) == {}, "its settlement took its cost, and the rest went back"
    balance, ledger, reserved = money(app, account)
    assert reserved == 0 and balance == ledger


def post_at_once(base, auth, count):
    """``count`` requests sent together; their status codes."""
    codes, start = [], threading.Barrier(count)

    def call():
        start.wait()
        codes.append(requests.post(f"{base}/v1/chat/completions", json=BODY, headers=auth, timeout=60).status_code)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def test_concurrent_requests_share_one_lease(app, live_server, auth, account, upstream):
    upstream.script("primary", Reply(wait_s=0.3))
    assert post_at_once(live_server, auth, LEASE_MIN_REQUESTS) == [200] * LEASE_MIN_REQUESTS
    assert len(reservations(app, account)) == 1, "one lease taken for them all"
    assert_books(app, account)


def test_a_burst_larger_than_a_lease_takes_the_next_lease_instead_of_holding_its_own(
    app, live_server, auth, account, upstream
):
    """Requests that waited for a lease and did not fit in it take the next one, sized to the
    demand: while the whole burst is in flight, every hold is a lease."""
    burst, codes = 4 * LEASE_MIN_REQUESTS, []
    upstream.script("primary", Reply(wait_s=1.0))
    sent = threading.Thread(target=lambda: codes.extend(post_at_once(live_server, auth, burst)))
    sent.start()
    deadline = time.monotonic() + 10
    while len(upstream.seen) < burst and time.monotonic() < deadline:
        time.sleep(0.02)
    held = reservations(app, account)
    sent.join()
    assert codes == [200] * burst
    # At least: on a loaded machine an answer can pass the test upstream's 1.5 s timeout and be
    # asked for again, still under the same hold.
    assert len(upstream.seen) >= burst
    assert held and all(hold.startswith("lease:") for hold in held), held
    assert len(held) < burst / LEASE_MIN_REQUESTS, "each lease larger than the last"
    assert_books(app, account)


def test_two_workers_never_admit_more_than_the_balance(start_gunicorn, database_url, app, auth, account, upstream):
    """Across two gunicorn workers, each leasing: never more admitted than the balance covers, the
    books exact while the leases are out, and nothing held once the workers stopped."""
    if not database_url.startswith("postgresql"):
        pytest.skip("two workers share one database on PostgreSQL")
    set_balance(app, account, 20 * worst(app))
    upstream.script("primary", Reply(wait_s=0.5))  # every request in flight at once
    base = start_gunicorn(workers=2)
    codes = post_at_once(base, auth, 60)
    admitted = codes.count(200)
    assert set(codes) <= {200, 402} and 1 <= admitted <= 20, codes
    deadline = time.monotonic() + 10  # answers are settled just after their last byte
    while sum(e.status == "ok" for e in usage_events(app, account)) < admitted and time.monotonic() < deadline:
        time.sleep(0.05)
    balance, _ = assert_books(app, account)
    assert balance == 20 * worst(app) - admitted * COST
    held = reservations(app, account)
    assert all(hold.startswith("lease:") for hold in held), held

    for process in start_gunicorn.processes:
        process.terminate()
        process.wait(timeout=30)
    assert reservations(app, account) == {}, "each worker gave its leases back as it stopped"
    assert money(app, account) == (balance, balance, 0)
