"""Stripe events as Stripe sends them, signed for real, and the objects they carry."""

import json
import time
import uuid

import stripe

from tests.billing.conftest import WEBHOOK_SECRET
from tests.conftest import money

CENT = 10_000  # micro-USD


def event(kind, obj, created=None, event_id=None):
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "data": {"object": obj},
    }


def signed(payload, secret=WEBHOOK_SECRET, timestamp=None):
    """(body, headers) of a delivery of ``payload``."""
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body, {"Stripe-Signature": header, "Content-Type": "application/json"}


def deliver(client, payload, secret=WEBHOOK_SECRET, timestamp=None):
    body, headers = signed(payload, secret, timestamp)
    return client.post("/v1/billing/webhooks", data=body, headers=headers)


def balance(app, account):
    cached, ledger, _ = money(app, account)
    assert cached == ledger, "the cached balance equals the sum of the ledger"
    return cached


def topup_session(account, session_id="cs_1", cents=2000, paid=True, payment_intent="pi_topup", currency="usd"):
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": "payment",
        "customer": "cus_A",
        "amount_total": cents,
        "currency": currency,
        "payment_status": "paid" if paid else "unpaid",
        "payment_intent": payment_intent,
        "client_reference_id": str(account),
        "metadata": {"lunos_account_id": str(account), "lunos_purpose": "credits"},
    }


def invoice(
    invoice_id,
    reason="subscription_cycle",
    paid=5000,
    total=None,
    customer="cus_A",
    subscription="sub_1",
    currency="usd",
    price="price_pro",
):
    """A paid invoice of a subscription; its line's price is what Lunos must not trust."""
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "billing_reason": reason,
        "amount_paid": paid,
        "total": paid if total is None else total,
        "currency": currency,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": subscription, "metadata": {}},
        },
        "lines": {"data": [{"pricing": {"price_details": {"price": price}}}]},
    }


def invoice_payment(invoice_id, payment_intent, cents, currency="usd"):
    return {
        "id": f"inpay_{invoice_id}",
        "object": "invoice_payment",
        "invoice": invoice_id,
        "status": "paid",
        "amount_paid": cents,
        "amount_requested": cents,
        "currency": currency,
        "is_default": True,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
    }


def charge(
    charge_id="ch_1", amount_refunded=0, amount=2000, payment_intent="pi_topup", customer="cus_A", currency="usd"
):
    return {
        "id": charge_id,
        "object": "charge",
        "customer": customer,
        "amount": amount,
        "amount_refunded": amount_refunded,
        "currency": currency,
        "payment_intent": payment_intent,
    }


def refund(
    refund_id, cents, charge_id="ch_1", status="succeeded", created=None, payment_intent="pi_topup", currency="usd"
):
    return {
        "id": refund_id,
        "object": "refund",
        "amount": cents,
        "charge": charge_id,
        "currency": currency,
        "payment_intent": payment_intent,
        "status": status,
        "created": created or int(time.time()),
    }


def dispute(
    dispute_id="dp_1", charge_id="ch_1", cents=1500, status="needs_response", payment_intent="pi_topup", currency="usd"
):
    return {
        "id": dispute_id,
        "object": "dispute",
        "charge": charge_id,
        "payment_intent": payment_intent,
        "amount": cents,
        "currency": currency,
        "reason": "fraudulent",
        "status": status,
    }
