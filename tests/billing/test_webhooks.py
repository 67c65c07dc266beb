"""Stripe webhooks with real signatures: forgeries, malformed events, replays, top-ups, and no
Stripe call while a transaction is open."""

import json
import sqlite3
import time

import pytest
import stripe

from lunos.extensions import db
from lunos.models import Account, StripeCredit
from tests.billing.conftest import WEBHOOK_SECRET
from tests.billing.stripe_events import (
    CENT,
    balance,
    charge,
    deliver,
    dispute,
    event,
    invoice,
    invoice_payment,
    refund,
    topup_session,
)
from tests.conftest import set_plan


def test_paid_checkout_credits_once_whatever_the_replays(billing_app, billing_client, account, customer):
    start = balance(billing_app, account)
    completed = event("checkout.session.completed", topup_session(account))
    assert deliver(billing_client, completed).get_json()["outcome"] == "processed"
    assert deliver(billing_client, completed).get_json()["outcome"] == "duplicate"
    # The same payment reported again under another event: still one credit.
    assert (
        deliver(billing_client, event("checkout.session.async_payment_succeeded", topup_session(account))).status_code
        == 200
    )
    assert balance(billing_app, account) - start == 2000 * CENT


def test_async_payment_is_credited_when_it_succeeds(billing_app, billing_client, account, customer):
    start = balance(billing_app, account)
    deliver(billing_client, event("checkout.session.completed", topup_session(account, paid=False)))
    assert balance(billing_app, account) == start, "not paid yet"
    deliver(billing_client, event("checkout.session.async_payment_failed", topup_session(account, "cs_2", paid=False)))
    deliver(billing_client, event("checkout.session.async_payment_succeeded", topup_session(account)))
    assert balance(billing_app, account) - start == 2000 * CENT


def test_customer_is_linked_from_metadata_when_unknown(billing_app, billing_client, account):
    session = {**topup_session(account), "customer": "cus_new"}
    deliver(billing_client, event("checkout.session.completed", session))
    with billing_app.app_context():
        assert db.session.get(Account, account).stripe_customer_id == "cus_new"


def test_unknown_customer_is_200_and_changes_nothing(billing_app, billing_client, account, customer, stripe_fake):
    start = balance(billing_app, account)
    stranger = {
        **topup_session(account),
        "customer": "cus_stranger",
        "metadata": {"lunos_purpose": "credits"},
        "client_reference_id": None,
    }
    for payload in (
        event("checkout.session.completed", stranger),
        event("charge.refunded", charge(customer="cus_stranger", payment_intent="pi_other", amount_refunded=500)),
        event("invoice.paid", invoice("in_x", customer="cus_stranger")),
        event("customer.subscription.updated", stripe_fake.subscribe("sub_x", customer="cus_stranger")),
    ):
        response = deliver(billing_client, payload)
        assert response.status_code == 200 and response.get_json()["outcome"] == "ignored", payload["type"]
    assert balance(billing_app, account) == start
    assert not stripe_fake.calls, "nothing to ask Stripe about an account Lunos does not have"


@pytest.mark.parametrize("forge", ["wrong secret", "stale", "no header", "tampered"])
def test_bad_signatures_are_400_and_change_nothing(billing_app, billing_client, account, customer, forge):
    start = balance(billing_app, account)
    payload = event("checkout.session.completed", topup_session(account))
    if forge == "wrong secret":
        response = deliver(billing_client, payload, secret="whsec_other")
    elif forge == "stale":
        response = deliver(billing_client, payload, timestamp=int(time.time()) - 3600)
    elif forge == "no header":
        response = billing_client.post(
            "/v1/billing/webhooks", data=json.dumps(payload), content_type="application/json"
        )
    else:
        body = json.dumps(payload)
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
        response = billing_client.post(
            "/v1/billing/webhooks",
            data=body.replace("2000", "9000"),
            content_type="application/json",
            headers={"Stripe-Signature": header},
        )
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert balance(billing_app, account) == start


@pytest.mark.parametrize(
    "malformed",
    [
        {"id": "evt_1", "type": "charge.refunded"},  # no data
        {"id": "evt_1", "type": "charge.refunded", "data": {}},  # no data.object
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": "ch_1"}},  # not an object
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": [1, 2]}},
        {"id": 7, "type": "charge.refunded", "data": {"object": {}}},  # id not a string
        {"id": "evt_1", "type": None, "data": {"object": {}}},  # type not a string
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": {"object": "charge"}}},  # a charge without id
        {
            "id": "evt_1",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": "cs_1",
                    "mode": "payment",
                    "payment_status": "paid",
                    "customer": "cus_A",
                    "amount_total": "20.00",
                    "metadata": {"lunos_purpose": "credits"},
                }
            },
        },  # amount a string
        [1, 2, 3],
    ],
)
def test_signed_events_not_shaped_like_events_are_400(billing_app, billing_client, account, customer, malformed):
    start = balance(billing_app, account)
    response = deliver(billing_client, malformed)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert balance(billing_app, account) == start


def test_unknown_events_are_acknowledged_and_ignored(billing_client):
    response = deliver(billing_client, event("payout.paid", {"id": "po_1", "object": "payout"}))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"


def test_webhooks_not_configured_is_503(client):
    assert deliver(client, event("payout.paid", {"id": "po_1"})).status_code == 503


def test_stripe_down_is_a_502_so_stripe_retries(billing_app, billing_client, account, customer, stripe_fake):
    stripe_fake.fail_with = (500, "down")
    payload = event("customer.subscription.updated", stripe_fake.subscribe("sub_1"))
    assert deliver(billing_client, payload).status_code == 502
    stripe_fake.fail_with = None
    assert deliver(billing_client, payload).get_json()["outcome"] == "processed", "the retry applies it"


def test_no_stripe_call_while_a_transaction_is_open(
    billing_app, billing_client, manager, account, customer, stripe_fake, database_url
):
    """While Lunos waits for Stripe, the database can be written: no transaction of the request
    holds SQLite's write lock (on SQLite it would block every other write of the worker)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's one write lock is what this probes; PostgreSQL has row locks")
    path = database_url.removeprefix("sqlite:///")

    def writable():
        probe = sqlite3.connect(path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # takes the write lock, or fails at once
            probe.rollback()
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            probe.close()

    stripe_fake.probe = writable
    stripe_fake.subscribe("sub_1")
    stripe_fake.charges["ch_9"] = {"customer": "cus_A", "amount": 3000, "currency": "usd"}
    stripe_fake.refunds["ch_1"] = [refund("re_1", 500)]
    stripe_fake.invoice_payments["in_1"] = [invoice_payment("in_1", "pi_in_1", 5000)]
    for payload in (
        event("checkout.session.completed", topup_session(account)),
        event("customer.subscription.created", stripe_fake.subscriptions["sub_1"]),
        event("invoice.paid", invoice("in_1", reason="subscription_create")),
        event("charge.refunded", charge(amount_refunded=500)),
        event("refund.failed", refund("re_1", 500, status="failed")),
        event("charge.dispute.created", dispute("dp_9", charge_id="ch_9", payment_intent=None)),
    ):
        assert deliver(billing_client, payload).status_code == 200, payload["type"]
    set_plan(billing_app, account, "pro", stripe_subscription_id=None, subscription_status=None)
    assert billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 10}).status_code == 200
    assert billing_client.post("/v1/billing/portal", headers=manager).status_code == 200
    called = {call.path for call in stripe_fake.calls}
    assert {
        "/v1/subscriptions/sub_1",
        "/v1/invoice_payments",
        "/v1/refunds",
        "/v1/charges/ch_9",
        "/v1/checkout/sessions",
        "/v1/billing_portal/sessions",
    } <= called
    assert [call.path for call in stripe_fake.calls if call.probe is not True] == []


def test_a_unique_reference_refusing_a_row_is_a_duplicate_with_everything_rolled_back(
    billing_app, billing_client, account, customer
):
    """The unique references are the last line of defence: should a row slip past the checks
    made under the lock, the event's whole transaction rolls back and answers 200."""
    with billing_app.app_context():  # a record of this session's payment, without its ledger row
        db.session.add(
            StripeCredit(account_id=account, source="cs_1", payment="pi_topup", amount_cents=2000, credited_micros=0)
        )
        db.session.commit()
    start = balance(billing_app, account)
    response = deliver(billing_client, event("checkout.session.completed", topup_session(account)))
    assert response.status_code == 200 and response.get_json()["outcome"] == "duplicate"
    assert balance(billing_app, account) == start
