"""Stripe's way: several events at the same moment, to different workers and instances of a
real gunicorn on PostgreSQL. After each burst the account's cached balance equals its ledger,
the amounts are exact, and nothing answered 5xx."""

import threading
import time

import pytest
import requests

from lunos.extensions import db
from lunos.models import Account
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.stripe_events import (
    CENT,
    balance,
    charge,
    deliver,
    event,
    invoice,
    invoice_payment,
    refund,
    signed,
    topup_session,
)

ROUNDS = 4
USD = 1_000_000


@pytest.fixture
def gateways(start_gunicorn, database_url, billing_app, stripe_fake):
    """start(instances) -> base URLs of that many gunicorns of two workers each."""
    if not database_url.startswith("postgresql"):
        pytest.skip(
            "concurrent webhooks run against PostgreSQL (LUNOS_TEST_DATABASE_URL): SQLite has one "
            "writer, so gunicorn's workers could only queue on it"
        )

    def start(instances=1):
        return [
            start_gunicorn(
                workers=2,
                STRIPE_SECRET_KEY="sk_test_lunos",
                STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                LUNOS_STRIPE_API_BASE=stripe_fake.url,
                LUNOS_DB_POOL_SIZE="3",
                LUNOS_DB_POOL_OVERFLOW="2",
                LUNOS_LOG_LEVEL="WARNING",
                LUNOS_AUTO_MIGRATE="false",
            )
            for _ in range(instances)
        ]

    return start


def at_once(bases, payloads):
    """Post the signed payloads from one thread each, released together, spread over the
    gateways (a new connection each, so the kernel spreads them over the workers too); their
    outcomes, once every answer was a 200."""
    barrier = threading.Barrier(len(payloads))
    answers = [None] * len(payloads)

    def post(index, payload):
        body, headers = signed(payload)
        barrier.wait()
        answers[index] = requests.post(
            f"{bases[index % len(bases)]}/v1/billing/webhooks",
            data=body,
            headers={**headers, "Connection": "close"},
            timeout=30,
        )

    threads = [threading.Thread(target=post, args=(i, p)) for i, p in enumerate(payloads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [200] * len(payloads), [a.text for a in answers]
    return [a.json()["outcome"] for a in answers]


@pytest.mark.parametrize("instances", [1, 2])
def test_two_refunds_of_one_charge_at_once_debit_once(
    gateways, billing_app, billing_client, account, customer, stripe_fake, instances
):
    bases = gateways(instances)
    for n in range(ROUNDS):
        deliver(
            billing_client,
            event("checkout.session.completed", topup_session(account, f"cs_{n}", payment_intent=f"pi_{n}")),
        )
        before = balance(billing_app, account)
        stripe_fake.refunds[f"ch_{n}"] = [
            refund(f"re_{n}_a", 300, f"ch_{n}", created=1, payment_intent=f"pi_{n}"),
            refund(f"re_{n}_b", 700, f"ch_{n}", created=2, payment_intent=f"pi_{n}"),
        ]
        at_once(
            bases,
            [
                event("charge.refunded", charge(f"ch_{n}", 300, payment_intent=f"pi_{n}")),
                event("charge.refunded", charge(f"ch_{n}", 1000, payment_intent=f"pi_{n}")),
                event("refund.created", stripe_fake.refunds[f"ch_{n}"][1]),
            ],
        )
        assert before - balance(billing_app, account) == 1000 * CENT, f"round {n}: 10.00, not 13.00"
        failed = {**stripe_fake.refunds[f"ch_{n}"][1], "status": "failed"}
        stripe_fake.refunds[f"ch_{n}"][1] = failed
        at_once(
            bases,
            [
                event("refund.failed", failed),
                event("charge.refund.updated", failed),
                event("charge.refunded", charge(f"ch_{n}", 1000, payment_intent=f"pi_{n}")),
            ],
        )
        assert before - balance(billing_app, account) == 300 * CENT, f"round {n}: the failed 7.00 given back once"


def test_completed_and_async_succeeded_of_one_session_at_once_credit_once(gateways, billing_app, account, customer):
    bases = gateways()
    for n in range(ROUNDS):
        before = balance(billing_app, account)
        completed = event("checkout.session.completed", topup_session(account, f"cs_{n}", payment_intent=f"pi_{n}"))
        outcomes = at_once(
            bases,
            [
                completed,
                completed,  # one event delivered twice
                event(
                    "checkout.session.async_payment_succeeded",
                    topup_session(account, f"cs_{n}", payment_intent=f"pi_{n}"),
                ),
            ],
        )
        assert outcomes.count("duplicate") >= 1
        assert balance(billing_app, account) - before == 2000 * CENT, f"round {n}"


def test_older_and_newer_subscription_events_at_once_end_as_stripe_has_it(
    gateways, billing_app, account, customer, stripe_fake
):
    bases = gateways()
    plans = ("price_basic", "price_pro")
    for n in range(ROUNDS):
        now, final = int(time.time()), plans[n % 2]
        subscription = stripe_fake.subscribe("sub_1", price=final)
        stale = {**subscription, "items": {"data": [{"price": {"id": plans[(n + 1) % 2]}}]}}
        stripe_fake.invoice_payments[f"in_{n}"] = [invoice_payment(f"in_{n}", f"pi_in_{n}", 5000)]
        paid = invoice(f"in_{n}", reason="subscription_cycle")
        before = balance(billing_app, account)
        at_once(
            bases,
            [
                event("customer.subscription.updated", stale, created=now - 10),
                event("customer.subscription.updated", subscription, created=now),
                event("customer.subscription.updated", stale, created=now),  # the same second
                event("invoice.paid", paid),
                event("invoice.paid", paid),
            ],
        )
        with billing_app.app_context():
            row = db.session.get(Account, account)
            assert (row.plan, row.stripe_subscription_id, row.subscription_status) == (
                {"price_basic": "basic", "price_pro": "pro"}[final],
                "sub_1",
                "active",
            ), f"round {n}"
        granted = {"price_basic": 10, "price_pro": 50}[final] * USD
        assert balance(billing_app, account) - before == granted, f"round {n}: one period's credits, once"
