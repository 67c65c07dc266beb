"""Subscriptions: the account's plan synced to the subscription as Stripe has it now, and the
credits each paid invoice grants.

State comes from Stripe, never from an event's payload or its order: every subscription or
invoice event retrieves the subscription (``GET /v1/subscriptions/{id}``) and syncs the account
to it. Two deliveries can fetch at the same moment and commit in either order, so the sync is
optimistic: read the account's sync counter, fetch, then in the locked transaction apply only if
the counter is unchanged (and bump it); otherwise another sync committed meanwhile, perhaps
with an older fetch than ours or a newer one, so read and fetch again (a bounded number of
times). Each commit therefore applies a fetch that started after the previous commit: whatever
commits last saw Stripe's state at least as new as anything applied before it.

One subscription per account. The account's current subscription is adopted when the account
has none: the subscription of a Checkout Session of the account's, or any live subscription of
its Stripe customer (or whose ``lunos_account_id`` metadata names it). An event about another
subscription while one is current changes nothing, and a second live one is listed for the
operator. A subscription that ends (``canceled``, ``incomplete_expired``) leaves the account
with none, on the default plan.
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from lunos import ledger
from lunos.billing import store, stripe_api
from lunos.billing.events import (
    IGNORED,
    PROCESSED,
    USD,
    Delivery,
    Stale,
    account_hint,
    amount,
    currency,
    mapping,
    required_text,
    text,
)
from lunos.errors import ServiceUnavailable
from lunos.plans import Plan, Plans
from lunos.services.prepared import Transaction

log = logging.getLogger("lunos.billing")

ENDED = frozenset({"canceled", "incomplete_expired"})  # the subscription is over: the account has none
SYNC_ATTEMPTS = 8  # each round of concurrent syncs of one account commits at least one of them
# Invoices that pay for a period of the plan. An update is a mid-period plan change (proration).
CREATE, CYCLE, UPDATE = "subscription_create", "subscription_cycle", "subscription_update"
GRANTING = (CREATE, CYCLE, UPDATE)
# More effects of an event, in the sync's transaction: (tx, the account before the sync, the subscription).
Then = Callable[[Transaction, store.AccountState, dict], str]


def subscription_changed(delivery: Delivery) -> str:
    """customer.subscription.created / updated / deleted / paused / resumed."""
    subscription = delivery.obj
    owner = store.find_account(text(subscription, "customer"), account_hint(subscription))
    if owner is None:
        return delivery.nothing("no Lunos account for this customer")
    return sync(delivery, owner, required_text(subscription, "id"))


def checkout_completed(delivery: Delivery) -> str:
    """A subscription's Checkout Session completed: adopt its subscription."""
    session = delivery.obj
    subscription_id = text(session, "subscription")
    owner = store.find_account(text(session, "customer"), account_hint(session))
    if owner is None or subscription_id is None:
        return delivery.nothing("no Lunos account or no subscription for this session")
    return sync(delivery, owner, subscription_id)


def invoice_payment_failed(delivery: Delivery) -> str:
    """Stripe moved the subscription on (past_due, or incomplete): sync to it."""
    return _invoice_event(delivery, grant=False)


def invoice_paid(delivery: Delivery) -> str:
    """Sync, then grant the plan's credits for the period this invoice paid, once."""
    return _invoice_event(delivery, grant=True)


def _invoice_event(delivery: Delivery, grant: bool) -> str:
    invoice = delivery.obj
    invoice_id = required_text(invoice, "id")
    details = mapping(mapping(invoice, "parent"), "subscription_details")  # where API 2025+ names it
    subscription_id = text(details, "subscription") or text(invoice, "subscription")
    if subscription_id is None:
        return delivery.nothing("not a subscription's invoice")
    owner = store.find_account(text(invoice, "customer"), account_hint(details) or account_hint(invoice))
    if owner is None:
        return delivery.nothing("no Lunos account for this customer")
    if not grant or text(invoice, "billing_reason") not in GRANTING:
        return sync(delivery, owner, subscription_id)
    payments = []
    if amount(invoice, "amount_paid") > 0 and currency(invoice) == USD and not store.was_credited(invoice_id):
        payments = [
            (_payment_id(p), amount(p, "amount_paid")) for p in stripe_api.invoice_payments(delivery.config, invoice_id)
        ]
    return sync(
        delivery,
        owner,
        subscription_id,
        then=lambda tx, account, subscription: _grant(tx, delivery, account, subscription, payments),
    )


def _payment_id(invoice_payment: dict) -> str:
    payment = mapping(invoice_payment, "payment")
    return text(payment, "payment_intent") or text(payment, "charge") or ""


def sync(delivery: Delivery, owner: store.Owner, subscription_id: str, then: Then | None = None) -> str:
    """Sync the account to the subscription as Stripe has it (see the module's docstring);
    ``then(tx, account, subscription)`` adds the event's other effects to the same transaction
    when the subscription is the account's."""
    for _ in range(SYNC_ATTEMPTS):
        seen = store.sync_counter(owner.account_id)
        subscription = stripe_api.subscription(delivery.config, subscription_id)
        try:
            return delivery.commit(
                partial(
                    _apply,
                    delivery=delivery,
                    owner=owner,
                    seen=seen,
                    subscription_id=subscription_id,
                    subscription=subscription,
                    then=then,
                )
            )
        except Stale:
            log.info(
                "stripe event %s: account %s synced meanwhile; fetching %s again",
                delivery.id,
                owner.account_id,
                subscription_id,
            )
    raise ServiceUnavailable(
        "The subscription kept changing while this event was applied; Stripe will deliver it again."
    )


def _apply(
    tx: Transaction,
    delivery: Delivery,
    owner: store.Owner,
    seen: int,
    subscription_id: str,
    subscription: dict | None,
    then: Then | None,
) -> str:
    store.claim(tx, owner)
    account = store.account_state(tx, owner.account_id)
    if subscription is None:
        delivery.notice(
            tx,
            f"missing:{subscription_id}",
            "missing_subscription",
            f"Stripe has no subscription {subscription_id} (account {account.id}): nothing changed; "
            "are the Stripe keys of the same mode (test/live) as the webhook?",
            account_id=account.id,
            stripe_object=subscription_id,
        )
        return IGNORED
    status = text(subscription, "status")
    ours = account.subscription == subscription_id or (account.subscription is None and _belongs(subscription, account))
    if not ours:
        if account.subscription is not None and status not in ENDED and _belongs(subscription, account):
            delivery.notice(
                tx,
                f"second:{subscription_id}",
                "second_subscription",
                f"account {account.id} has a second live subscription {subscription_id} besides "
                f"{account.subscription}: Lunos ignores it; cancel or refund it in Stripe",
                account_id=account.id,
                stripe_object=subscription_id,
            )
        log.info(
            "stripe event %s: subscription %s is not account %s's; ignored", delivery.id, subscription_id, account.id
        )
        return IGNORED
    if account.sync != seen:
        raise Stale
    if account.subscription is not None or status not in ENDED:  # else: an ended one, nothing to adopt
        _set_state(tx, delivery.plans, account, subscription)
    return then(tx, account, subscription) if then else PROCESSED


def _belongs(subscription: dict, account: store.AccountState) -> bool:
    customer = text(subscription, "customer")
    return (customer is not None and customer == account.customer) or str(
        mapping(subscription, "metadata").get("lunos_account_id") or ""
    ) == str(account.id)


def plan_of(subscription: dict, plans: Plans) -> Plan | None:
    """The plan whose Stripe price the subscription's items carry."""
    for item in mapping(subscription, "items").get("data") or []:
        plan = plans.by_price(text(item, "price")) if isinstance(item, dict) else None
        if plan is not None:
            return plan
    return None


def _set_state(tx: Transaction, plans: Plans, account: store.AccountState, subscription: dict) -> None:
    status = text(subscription, "status")
    if status in ENDED:
        store.set_subscription(tx, account.id, None, None, status, None)
        return
    plan = plan_of(subscription, plans)
    if plan is None:
        log.warning("stripe subscription %s: no plan has its price; plan unchanged", subscription.get("id"))
    past_due_since = (account.past_due_since or datetime.now(UTC)) if status == "past_due" else None
    store.set_subscription(
        tx, account.id, plan.name if plan else account.plan, text(subscription, "id"), status, past_due_since
    )


def _grant(
    tx: Transaction,
    delivery: Delivery,
    account: store.AccountState,
    subscription: dict,
    payments: list[tuple[str, int]],
) -> str:
    """The credits of the period the invoice paid, once per invoice, for the subscription's plan
    as Stripe has it. A $0 invoice (a trial) grants the plan's trial credits instead of its
    monthly ones. An upgrade's invoice grants what the new plan's allowance adds to what this
    period was granted already; a downgrade grants nothing until the next cycle."""
    invoice = delivery.obj
    invoice_id, reason, source_ref = invoice["id"], invoice.get("billing_reason"), f"invoice:{invoice['id']}"
    if currency(invoice) != USD:
        delivery.notice(
            tx,
            f"currency:{invoice_id}",
            "currency",
            f"invoice {invoice_id} of account {account.id} was paid in {currency(invoice).upper()}: "
            "Lunos credits in USD, so it granted nothing",
            account_id=account.id,
            stripe_object=invoice_id,
        )
        return PROCESSED
    if store.credited(tx, invoice_id) or ledger.posted(tx, source_ref):
        return PROCESSED  # this invoice was granted already, through another event
    plan = plan_of(subscription, delivery.plans)
    if plan is None:
        delivery.notice(
            tx,
            f"price:{invoice_id}",
            "unknown_price",
            f"invoice {invoice_id} of account {account.id}: subscription {subscription.get('id')} "
            "has no plan's price, so it granted nothing",
            account_id=account.id,
            stripe_object=invoice_id,
        )
        return PROCESSED
    paid = amount(invoice, "amount_paid")
    free = amount(invoice, "total", paid) <= 0
    allowance = plan.trial_credits_micros if free else plan.monthly_credits_micros
    if reason == UPDATE:
        credits, period = max(0, allowance - account.period_credits), max(allowance, account.period_credits)
    else:
        credits, period = allowance, allowance
    store.add_credits(tx, account.id, invoice_id, payments or [("", paid)], credits)
    store.set_period_credits(tx, account.id, period)
    if credits:
        ledger.post(
            tx,
            [
                ledger.entry(
                    account.id,
                    credits,
                    ledger.SUBSCRIPTION,
                    source_ref,
                    f"{plan.name} plan {'trial ' if free else ''}credits ({reason}) for invoice {invoice_id}",
                )
            ],
        )
    return PROCESSED
