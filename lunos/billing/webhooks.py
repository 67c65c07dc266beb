"""Stripe webhooks: verified on the raw body, shaped like an event, each applied once.

Stripe delivers events at least once, in any order, often several at the same moment to
different workers and instances. So an event's payload is only a prompt: what it is about
(a subscription, a charge's refunds) is read from Stripe, before any transaction opens, and
applied in one short transaction under the account's lock (lunos/billing/events.py).
"""

import json
from collections.abc import Mapping

import stripe

from lunos.billing import payments, store, subscriptions
from lunos.billing.events import DUPLICATE, Delivery
from lunos.errors import InvalidRequest, ServiceUnavailable
from lunos.plans import Plans


def verify(payload: bytes, signature: str | None, secret: str | None) -> dict:
    """The event as a dict, once its signature (and timestamp tolerance) checks out and it is
    shaped like a Stripe event; else a 400."""
    if not secret:
        raise ServiceUnavailable("Webhooks are not configured on this gateway (STRIPE_WEBHOOK_SECRET is not set).")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, stripe.Webhook.DEFAULT_TOLERANCE
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"Invalid Stripe webhook: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidRequest("Invalid Stripe webhook: not an event")
    for field in ("id", "type"):
        if not isinstance(event.get(field), str) or not event[field]:
            raise InvalidRequest(f"Invalid Stripe webhook: the event's {field} is not a string")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidRequest("Invalid Stripe webhook: the event's data.object is not an object")
    return event


HANDLERS = {
    "checkout.session.completed": payments.checkout_completed,
    "checkout.session.async_payment_succeeded": payments.topup_paid,
    "invoice.paid": subscriptions.invoice_paid,
    "invoice.payment_failed": subscriptions.invoice_payment_failed,
    "customer.subscription.created": subscriptions.subscription_changed,
    "customer.subscription.updated": subscriptions.subscription_changed,
    "customer.subscription.deleted": subscriptions.subscription_changed,
    "customer.subscription.paused": subscriptions.subscription_changed,
    "customer.subscription.resumed": subscriptions.subscription_changed,
    "charge.refunded": payments.refunds_changed,
    "charge.refund.updated": payments.refunds_changed,
    "refund.created": payments.refunds_changed,
    "refund.updated": payments.refunds_changed,
    "refund.failed": payments.refunds_changed,
    "charge.dispute.created": payments.dispute_created,
    "charge.dispute.closed": payments.dispute_closed,
}


def process(event: dict, plans: Plans, config: Mapping) -> str:
    """Apply one verified event; 'processed', 'duplicate' or 'ignored'."""
    if store.event_seen(event["id"]):
        return DUPLICATE  # a redelivery: answered without asking Stripe anything
    delivery = Delivery(event["id"], event["type"], event["data"]["object"], plans, config)
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return delivery.nothing("not an event Lunos acts on")
    return handler(delivery)
