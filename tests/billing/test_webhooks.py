"""Stripe webhooks with real signatures: replays, reordering, forgeries, refunds, disputes."""
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import stripe

from lunos.extensions import db
from lunos.models import Account, LedgerEntry
from tests.billing.conftest import WEBHOOK_SECRET
from tests.conftest import money, set_plan

CENT = 10_000  # micro-USD


def event(kind, obj, created=None, event_id=None):
    return {"id": event_id or f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind,
            "created": created or int(time.time()), "data": {"object": obj}}


def deliver(client, payload, secret=WEBHOOK_SECRET, timestamp=None):
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return client.post("/v1/billing/webhooks", data=body, content_type="application/json",
                       headers={"Stripe-Signature": header})


@pytest.fixture
def customer(billing_app, account):
    set_plan(billing_app, account, None, stripe_customer_id="cus_A")
    return "cus_A"


def topup_session(account, session_id="cs_1", cents=2000, paid=True):
    return {"id": session_id, "object": "checkout.session", "mode": "payment", "customer": "cus_A",
            "amount_total": cents, "payment_status": "paid" if paid else "unpaid",
            "client_reference_id": str(account),
            "metadata": {"lunos_account_id": str(account), "lunos_purpose": "credits"}}


def balance(app, account):
    cached, ledger, _ = money(app, account)
    assert cached == ledger, "the cached balance equals the sum of the ledger"
    return cached


def test_paid_checkout_credits_once_whatever_the_replays(billing_app, billing_client, account, customer):
    start = balance(billing_app, account)
    completed = event("checkout.session.completed", topup_session(account))
    assert deliver(billing_client, completed).get_json()["outcome"] == "processed"
    assert deliver(billing_client, completed).get_json()["outcome"] == "duplicate"
    # The same payment reported again under another event: still one credit.
    deliver(billing_client, event("checkout.session.async_payment_succeeded", topup_session(account)))
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


@pytest.mark.parametrize("forge", ["wrong secret", "stale", "no header", "tampered"])
def test_bad_signatures_are_400_and_change_nothing(billing_app, billing_client, account, customer, forge):
    start = balance(billing_app, account)
    payload = event("checkout.session.completed", topup_session(account))
    if forge == "wrong secret":
        response = deliver(billing_client, payload, secret="whsec_other")
    elif forge == "stale":
        response = deliver(billing_client, payload, timestamp=int(time.time()) - 3600)
    elif forge == "no header":
        response = billing_client.post("/v1/billing/webhooks", data=json.dumps(payload),
                                       content_type="application/json")
    else:
        body = json.dumps(payload)
        header = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
        response = billing_client.post("/v1/billing/webhooks", data=body.replace("2000", "9000"),
                                       content_type="application/json", headers={"Stripe-Signature": header})
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert balance(billing_app, account) == start


def test_unknown_events_are_acknowledged_and_ignored(billing_client):
    response = deliver(billing_client, event("payout.paid", {"id": "po_1", "object": "payout"}))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"


def invoice(invoice_id, price="price_pro", customer="cus_A", subscription="sub_1"):
    return {"id": invoice_id, "object": "invoice", "customer": customer, "amount_paid": 5000,
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": subscription, "metadata": {}}},
            "lines": {"data": [{"pricing": {"price_details": {"price": price}}}]}}


def test_invoice_paid_grants_plan_credits_once_per_invoice(billing_app, billing_client, account, customer):
    start = balance(billing_app, account)
    first = event("invoice.paid", invoice("in_1"))
    deliver(billing_client, first)
    deliver(billing_client, first)
    deliver(billing_client, event("invoice.paid", invoice("in_1")))  # same invoice, another event id
    assert balance(billing_app, account) - start == 50_000_000, "the pro plan's $50, once"
    deliver(billing_client, event("invoice.paid", invoice("in_2")))  # next period
    assert balance(billing_app, account) - start == 100_000_000


def subscription(status="active", price="price_pro"):
    return {"id": "sub_1", "object": "subscription", "customer": "cus_A", "status": status,
            "items": {"data": [{"price": {"id": price}}]}, "metadata": {}}


def account_row(app, account):
    with app.app_context():
        row = db.session.get(Account, account)
        db.session.expunge(row)
        return row


def test_subscription_events_sync_plan_and_status_in_order(billing_app, billing_client, account, customer):
    now = int(time.time())
    deliver(billing_client, event("customer.subscription.created", subscription("active", "price_basic"), now - 30))
    assert (account_row(billing_app, account).plan, account_row(billing_app, account).subscription_status) \
        == ("basic", "active")
    deliver(billing_client, event("customer.subscription.deleted", subscription("canceled"), now))
    # An update older than the deletion arrives late: it must not revive the subscription.
    deliver(billing_client, event("customer.subscription.updated", subscription("active", "price_pro"), now - 10))
    row = account_row(billing_app, account)
    assert (row.plan, row.subscription_status, row.stripe_subscription_id) == (None, "canceled", None)


def test_payment_failure_goes_past_due_then_restricted(billing_app, billing_client, account, customer, auth):
    now = int(time.time())
    deliver(billing_client, event("customer.subscription.created", subscription("active", "price_pro"), now - 60))
    deliver(billing_client, event("invoice.payment_failed", invoice("in_9"), now))
    view = billing_client.get("/v1/billing/subscription", headers=auth).get_json()
    assert (view["status"], view["restricted"], view["effective_plan"]) == ("past_due", False, "pro")
    set_plan(billing_app, account, "pro", past_due_since=datetime.now(timezone.utc) - timedelta(days=10))
    view = billing_client.get("/v1/billing/subscription", headers=auth).get_json()
    assert (view["restricted"], view["effective_plan"]) == (True, "free")
    deliver(billing_client, event("customer.subscription.updated", subscription("active"), now + 5))
    view = billing_client.get("/v1/billing/subscription", headers=auth).get_json()
    assert (view["status"], view["past_due_since"], view["restricted"]) == ("active", None, False)


def charge(amount_refunded):
    return {"id": "ch_1", "object": "charge", "customer": "cus_A", "amount": 2000,
            "amount_refunded": amount_refunded}


@pytest.mark.parametrize("order", [(500, 1200), (1200, 500)])
def test_refund_in_two_parts_debits_only_the_new_part(billing_app, billing_client, account, customer, order):
    start = balance(billing_app, account)
    for refunded in order:
        deliver(billing_client, event("charge.refunded", charge(refunded)))
    deliver(billing_client, event("charge.refunded", charge(1200)))  # a repeat under a new event id
    assert start - balance(billing_app, account) == 1200 * CENT


def test_dispute_debits_and_flags_the_account(billing_app, billing_client, account, customer, stripe_fake):
    stripe_fake.charges["ch_9"] = "cus_A"
    start = balance(billing_app, account)
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_9", "amount": 1500, "reason": "fraudulent"}
    assert deliver(billing_client, event("charge.dispute.created", dispute)).status_code == 200
    deliver(billing_client, event("charge.dispute.created", dispute))
    assert start - balance(billing_app, account) == 1500 * CENT
    row = account_row(billing_app, account)
    assert row.flagged and "dp_1" in row.flag_reason
    with billing_app.app_context():
        kinds = {e.kind for e in db.session.query(LedgerEntry).filter_by(account_id=account)}
    assert "dispute" in kinds


def test_webhooks_not_configured_is_503(client):
    assert deliver(client, event("payout.paid", {"id": "po_1"})).status_code == 503
