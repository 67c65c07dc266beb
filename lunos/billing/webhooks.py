"""Stripe webhooks: verified on the raw body, each event applied at most once, in any order.

Every effect on money is a ledger row whose source_ref names the Stripe object it comes from,
so two events about the same payment (completed, then async_payment_succeeded) credit once.
Subscription state only moves forward: an event older than the last one applied is ignored.
"""
import json
import logging
from datetime import datetime, timezone

import stripe
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lunos.billing.checkout import PURPOSE_CREDITS
from lunos.billing.stripe_api import calling_stripe, client
from lunos.errors import InvalidRequest, ServiceUnavailable
from lunos.extensions import db
from lunos.models import Account, LedgerEntry, StripeEvent
from lunos.services.access import ENDED
from lunos import ledger
from lunos.services.prepared import transaction

log = logging.getLogger(__name__)
CENT_MICROS = 10_000


def verify(payload, signature, secret):
    """The event as a dict, once its signature (and timestamp tolerance) checks out."""
    if not secret:
        raise ServiceUnavailable("Webhooks are not configured on this gateway (STRIPE_WEBHOOK_SECRET is not set).")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret,
                                              stripe.Webhook.DEFAULT_TOLERANCE)
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"Invalid Stripe webhook: {exc}") from None
    if not isinstance(event, dict) or not event.get("id") or not isinstance(event.get("data"), dict):
        raise InvalidRequest("Invalid Stripe webhook: not an event")
    return event


def process(event, plans, config):
    """Apply one event; returns 'processed', 'duplicate' or 'ignored'."""
    handler = HANDLERS.get(event.get("type"))
    db.session.add(StripeEvent(id=event["id"], type=str(event.get("type"))[:100]))
    try:
        db.session.flush()  # a concurrent or earlier delivery of this event holds the id
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    if handler is not None:
        handler(event["data"]["object"], event, plans, config)
    db.session.commit()
    return "processed" if handler else "ignored"


def _account(obj):
    """The account a Stripe object belongs to: by customer, else by the metadata Lunos set."""
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if customer:
        account = db.session.scalar(select(Account).where(Account.stripe_customer_id == customer))
        if account is not None:
            return account
    account_id = (obj.get("metadata") or {}).get("lunos_account_id") or obj.get("client_reference_id")
    account = db.session.get(Account, int(account_id)) if str(account_id or "").isdigit() else None
    if account is not None and customer and not account.stripe_customer_id:
        account.stripe_customer_id = customer
    return account


def _missing(event):
    log.warning("stripe event %s (%s) names no Lunos account; ignored", event["id"], event.get("type"))


def _post_once(account, micros, kind, source_ref, reason):
    """Post once per source_ref; a second event about the same Stripe object is a no-op."""
    exists = db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.source_ref == source_ref))
    if exists is None and micros:
        with transaction(db.engine) as tx:  # joins the session's transaction (the event's row)
            ledger.post(tx, [ledger.entry(account.id, micros, kind, source_ref, reason)])


def _paid_topup(session, event, plans, config):
    if session.get("mode") != "payment" or (session.get("metadata") or {}).get("lunos_purpose") != PURPOSE_CREDITS:
        return
    if session.get("payment_status") != "paid":
        return  # an asynchronous payment method: credited on async_payment_succeeded
    account = _account(session)
    if account is None:
        return _missing(event)
    _post_once(account, int(session.get("amount_total") or 0) * CENT_MICROS, "topup", f"checkout:{session['id']}",
            "credits bought through Stripe Checkout")


def checkout_completed(session, event, plans, config):
    if session.get("mode") == "subscription":
        account = _account(session)
        if account is None:
            return _missing(event)
        if session.get("subscription") and not account.stripe_subscription_id:
            account.stripe_subscription_id = session["subscription"]
        return
    _paid_topup(session, event, plans, config)


def async_payment_failed(session, event, plans, config):
    log.info("stripe checkout %s: asynchronous payment failed; nothing credited", session.get("id"))


def _invoice_price(invoice):
    for line in (invoice.get("lines") or {}).get("data") or []:
        price = line.get("price") or ((line.get("pricing") or {}).get("price_details") or {}).get("price")
        if isinstance(price, dict):
            price = price.get("id")
        if price:
            return price
    return None


def _subscription_details(invoice):
    # stripe 16: an invoice names its subscription under parent.subscription_details
    return (invoice.get("parent") or {}).get("subscription_details") or {}


def _invoice_subscription(invoice):
    return _subscription_details(invoice).get("subscription") or invoice.get("subscription")


def _invoice_account(invoice):
    return _account(invoice) or _account(_subscription_details(invoice))


def invoice_paid(invoice, event, plans, config):
    account = _invoice_account(invoice)
    if account is None:
        return _missing(event)
    plan = plans.by_price(_invoice_price(invoice))
    if plan is None or not _invoice_subscription(invoice):
        log.warning("stripe invoice %s: no plan for its price; no credits granted", invoice.get("id"))
        return
    _post_once(account, plan.monthly_credits_micros, "subscription", f"invoice:{invoice['id']}",
            f"{plan.name} plan credits for the period paid by invoice {invoice['id']}")


def _fresh(account, event):
    """True (and the event recorded as the latest) unless a newer subscription event was applied."""
    created = int(event.get("created") or 0)
    if account.subscription_event_at is not None and created < account.subscription_event_at:
        log.info("stripe event %s is older than the subscription state; ignored", event["id"])
        return False
    account.subscription_event_at = created
    return True


def _set_status(account, status):
    if status == "past_due" and account.past_due_since is None:
        account.past_due_since = datetime.now(timezone.utc)
    elif status != "past_due":
        account.past_due_since = None
    account.subscription_status = status


def invoice_payment_failed(invoice, event, plans, config):
    account = _invoice_account(invoice)
    if account is None:
        return _missing(event)
    if _invoice_subscription(invoice) and _fresh(account, event):
        _set_status(account, "past_due")


def subscription_changed(subscription, event, plans, config):
    account = _account(subscription)
    if account is None:
        return _missing(event)
    if not _fresh(account, event):
        return
    status = subscription.get("status")
    if event["type"] == "customer.subscription.deleted" or status in ENDED:
        account.plan, account.stripe_subscription_id = None, None
        _set_status(account, "canceled" if event["type"] == "customer.subscription.deleted" else status)
        return
    items = (subscription.get("items") or {}).get("data") or []
    price = ((items[0].get("price") or {}).get("id")) if items else None
    plan = plans.by_price(price)
    if plan is None:
        log.warning("stripe subscription %s: price %s is no plan's; plan unchanged", subscription.get("id"), price)
    else:
        account.plan = plan.name
    account.stripe_subscription_id = subscription.get("id")
    _set_status(account, status)


def charge_refunded(charge, event, plans, config):
    """``amount_refunded`` is cumulative: debit only what no earlier refund event debited."""
    account = _account(charge)
    if account is None:
        return _missing(event)
    refunded = int(charge.get("amount_refunded") or 0) * CENT_MICROS
    prefix = f"refund:{charge['id']}:"
    already = -int(db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_micros), 0))
                                     .where(LedgerEntry.source_ref.startswith(prefix))))
    if refunded > already:
        with transaction(db.engine) as tx:
            ledger.post(tx, [ledger.entry(account.id, -(refunded - already), ledger.REFUND, f"{prefix}{refunded}",
                                          f"refund of Stripe charge {charge['id']}")])


def dispute_created(dispute, event, plans, config):
    charge = dispute.get("charge")
    if isinstance(charge, str):
        with calling_stripe():  # a dispute does not name the customer; its charge does
            charge = client(config).v1.charges.retrieve(charge).to_dict()
    account = _account(charge or {})
    if account is None:
        return _missing(event)
    _post_once(account, -int(dispute.get("amount") or 0) * CENT_MICROS, "dispute", f"dispute:{dispute['id']}",
               f"dispute {dispute['id']}: {dispute.get('reason')}")
    account.flagged = True
    account.flag_reason = f"Stripe dispute {dispute['id']} ({dispute.get('reason')})"


HANDLERS = {
    "checkout.session.completed": checkout_completed,
    "checkout.session.async_payment_succeeded": _paid_topup,
    "checkout.session.async_payment_failed": async_payment_failed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_created,
}
