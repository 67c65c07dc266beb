"""Payments: top-ups credited, refunds and disputes taken back, failed refunds and won
disputes given back; each once, under the account's lock.

A refund or dispute takes back what the payment bought. Lunos records, when it credits, which
payment paid for what (``stripe_credits``): a top-up's Checkout Session names its PaymentIntent,
and a subscription invoice's InvoicePayments name theirs (since API version 2025-03-31 a charge
no longer names its invoice). A charge is matched to that record through its PaymentIntent
(or its own id, for a charge without one). So a top-up's refund takes back the refunded amount,
and a subscription invoice's refund the invoice's granted credits in proportion to the refunded
share. A payment Lunos has no record of (one made before this version, or outside Lunos) is
taken back one for one, and listed for the operator.

Refunds are synced from Stripe like subscriptions: any refund event of a charge lists the
charge's refunds (``GET /v1/refunds?charge=``) and applies each refund once: debited while it
stands (``pending``, ``requires_action``, ``succeeded``), given back once if it then fails or is
canceled. A refund's state only moves forward here, so an older list, fetched by a concurrent
delivery, can neither debit twice nor revive a failed refund.
"""

import logging

from lunos import ledger
from lunos.billing import store, stripe_api, subscriptions
from lunos.billing.checkout import PURPOSE_CREDITS
from lunos.billing.events import PROCESSED, USD, Delivery, account_hint, amount, currency, mapping, required_text, text
from lunos.money import cents_to_micros
from lunos.services.prepared import Transaction

log = logging.getLogger("lunos.billing")

STANDING = frozenset({"pending", "requires_action", "succeeded"})
UNDONE = frozenset({"failed", "canceled"})


def checkout_completed(delivery: Delivery) -> str:
    if delivery.obj.get("mode") == "subscription":
        return subscriptions.checkout_completed(delivery)
    return topup_paid(delivery)


def topup_paid(delivery: Delivery) -> str:
    """A paid top-up's Checkout Session: credit the amount paid, once per session (completed,
    or async_payment_succeeded for a payment method that settles later)."""
    session = delivery.obj
    session_id = required_text(session, "id")
    if session.get("mode") != "payment" or mapping(session, "metadata").get("lunos_purpose") != PURPOSE_CREDITS:
        return delivery.nothing("not a Lunos top-up")
    if session.get("payment_status") != "paid":
        return delivery.nothing("not paid yet")  # an asynchronous payment method: credited when it succeeds
    owner = store.find_account(text(session, "customer"), account_hint(session))
    if owner is None:
        return delivery.nothing("no Lunos account for this customer")
    cents, paid_in = amount(session, "amount_total"), currency(session)

    def effects(tx: Transaction) -> str:
        store.claim(tx, owner)
        if paid_in != USD:
            delivery.notice(
                tx,
                f"currency:{session_id}",
                "currency",
                f"top-up {session_id} of account {owner.account_id} was paid in {paid_in.upper()}: "
                "Lunos credits in USD, so it credited nothing",
                account_id=owner.account_id,
                stripe_object=session_id,
            )
            return PROCESSED
        source_ref = f"checkout:{session_id}"
        if cents <= 0 or ledger.posted(tx, source_ref):
            return PROCESSED  # credited already, through the session's other event
        store.add_credits(
            tx, owner.account_id, session_id, [(text(session, "payment_intent") or "", cents)], cents_to_micros(cents)
        )
        ledger.post(
            tx,
            [
                ledger.entry(
                    owner.account_id,
                    cents_to_micros(cents),
                    ledger.TOPUP,
                    source_ref,
                    "credits bought through Stripe Checkout",
                )
            ],
        )
        return PROCESSED

    return delivery.commit(effects)


def _payer(
    delivery: Delivery, charge_id: str, payment_intent: str | None, charge: dict | None = None
) -> store.Paid | None:
    """What the charge's payment credited, from Lunos's records; else (looking the charge up in
    Stripe if need be: a refund or dispute does not name the customer) an unmatched payment of
    the charge's customer's account."""
    paid = store.paid_by(payment_intent or text(charge or {}, "payment_intent"), charge_id)
    if paid is not None:
        return paid
    if charge is None:
        charge = stripe_api.charge(delivery.config, charge_id)
    owner = store.find_account(text(charge, "customer"), account_hint(charge)) if charge else None
    if owner is None:
        return None
    return store.Paid(
        owner.account_id, amount(charge, "amount"), cents_to_micros(amount(charge, "amount")), matched=False
    )


def _unmatched(tx: Transaction, delivery: Delivery, paid: store.Paid, charge_id: str, what: str) -> None:
    if not paid.matched:
        delivery.notice(
            tx,
            f"unmatched:{charge_id}",
            "unmatched_payment",
            f"{what} of charge {charge_id} (account {paid.account_id}): Lunos has no record of what "
            "this payment credited, so it took it back one for one; check the account's ledger",
            account_id=paid.account_id,
            stripe_object=charge_id,
        )


def refunds_changed(delivery: Delivery) -> str:
    """charge.refunded, charge.refund.updated, refund.created / updated / failed: apply the
    charge's refunds as Stripe lists them now."""
    obj = delivery.obj
    is_charge = obj.get("object") == "charge" or delivery.type == "charge.refunded"
    charge_id = required_text(obj, "id") if is_charge else text(obj, "charge")
    if charge_id is None:
        return delivery.nothing("a refund of no charge (a customer balance, say): no credits bought it")
    paid = _payer(delivery, charge_id, text(obj, "payment_intent"), obj if is_charge else None)
    if paid is None:
        return delivery.nothing("no Lunos account for this charge")
    refunded_in = currency(obj)
    refunds = stripe_api.refunds(delivery.config, charge_id)

    def effects(tx: Transaction) -> str:
        store.claim(tx, store.Owner(paid.account_id))
        if refunded_in != USD:
            delivery.notice(
                tx,
                f"currency:{charge_id}",
                "currency",
                f"refund of charge {charge_id} (account {paid.account_id}) in {refunded_in.upper()}: "
                "Lunos credits in USD, so it took nothing back",
                account_id=paid.account_id,
                stripe_object=charge_id,
            )
            return PROCESSED
        _unmatched(tx, delivery, paid, charge_id, "refund")
        _apply_refunds(tx, paid, charge_id, refunds)
        return PROCESSED

    return delivery.commit(effects)


def _apply_refunds(tx: Transaction, paid: store.Paid, charge_id: str, refunds: list[dict]) -> None:
    applied = store.refunds_of(tx, charge_id)
    # What the charge's refunds took back so far (refunds of the earlier version included,
    # whose references name the charge and the cumulative amount).
    taken = -ledger.total(tx, f"refund:{charge_id}:") + sum(
        refund.debited_micros for refund in applied.values() if refund.status == store.DEBITED
    )
    standing = 0  # cents of the refunds that stand, in Stripe's order
    for refund in sorted(
        (r for r in refunds if isinstance(r, dict)), key=lambda r: (amount(r, "created"), str(r.get("id")))
    ):
        refund_id, status, cents = text(refund, "id"), text(refund, "status"), amount(refund, "amount")
        if refund_id is None or cents <= 0:
            continue
        before = applied.get(refund_id)
        if status in UNDONE or (before is not None and before.status == store.FAILED):
            if before is None:  # failed before Lunos saw it stand: nothing to give back, ever
                store.add_refund(tx, refund_id, paid.account_id, charge_id, cents, 0, store.FAILED)
            elif before.status == store.DEBITED:
                store.fail_refund(tx, refund_id)
                taken -= before.debited_micros
                if before.debited_micros:
                    ledger.post(
                        tx,
                        [
                            ledger.entry(
                                paid.account_id,
                                before.debited_micros,
                                ledger.REFUND_REVERSAL,
                                f"refund-reversal:{refund_id}",
                                f"refund {refund_id} of Stripe charge {charge_id} {status}",
                            )
                        ],
                    )
            continue
        if status not in STANDING:
            continue
        standing += cents
        if before is None:
            # Cumulative, so that the parts of a payment refunded in full add up to its credits exactly.
            debit = max(0, paid.share(standing) - taken)
            store.add_refund(tx, refund_id, paid.account_id, charge_id, cents, debit, store.DEBITED)
            taken += debit
            if debit:
                ledger.post(
                    tx,
                    [
                        ledger.entry(
                            paid.account_id,
                            -debit,
                            ledger.REFUND,
                            f"refund:{refund_id}",
                            f"refund {refund_id} of Stripe charge {charge_id}",
                        )
                    ],
                )


def _dispute_payer(delivery: Delivery) -> tuple[str, store.Paid | None]:
    dispute = delivery.obj
    dispute_id, charge_id = required_text(dispute, "id"), required_text(dispute, "charge")
    charge = dispute["charge"] if isinstance(dispute.get("charge"), dict) else None
    return dispute_id, _payer(delivery, charge_id, text(dispute, "payment_intent"), charge)


def dispute_created(delivery: Delivery) -> str:
    """Take back what the disputed amount bought, once, and flag the account."""
    dispute = delivery.obj
    dispute_id, paid = _dispute_payer(delivery)
    if paid is None:
        return delivery.nothing("no Lunos account for the disputed charge")
    cents, disputed_in, charge_id = amount(dispute, "amount"), currency(dispute), text(dispute, "charge")

    def effects(tx: Transaction) -> str:
        store.claim(tx, store.Owner(paid.account_id))
        store.set_flag(tx, paid.account_id, f"Stripe dispute {dispute_id} ({dispute.get('reason')})")
        if disputed_in != USD:
            delivery.notice(
                tx,
                f"currency:{dispute_id}",
                "currency",
                f"dispute {dispute_id} (account {paid.account_id}) in {disputed_in.upper()}: Lunos "
                "credits in USD, so it took nothing back",
                account_id=paid.account_id,
                stripe_object=dispute_id,
            )
            return PROCESSED
        _unmatched(tx, delivery, paid, charge_id, "dispute")
        ledger.post_once(
            tx,
            ledger.entry(
                paid.account_id,
                -paid.share(cents),
                ledger.DISPUTE,
                f"dispute:{dispute_id}",
                f"dispute {dispute_id}: {dispute.get('reason')}",
            ),
        )
        return PROCESSED

    return delivery.commit(effects)


def dispute_closed(delivery: Delivery) -> str:
    """A won dispute gives back what its opening took, once, and clears the flag it set."""
    dispute = delivery.obj
    if dispute.get("status") != "won":
        return delivery.nothing(f"dispute closed {dispute.get('status')}: what it took stays taken")
    dispute_id, paid = _dispute_payer(delivery)
    if paid is None:
        return delivery.nothing("no Lunos account for the disputed charge")

    def effects(tx: Transaction) -> str:
        store.claim(tx, store.Owner(paid.account_id))
        taken = -(ledger.amount(tx, f"dispute:{dispute_id}") or 0)
        if taken > 0:
            ledger.post_once(
                tx,
                ledger.entry(
                    paid.account_id,
                    taken,
                    ledger.DISPUTE_REVERSAL,
                    f"dispute-won:{dispute_id}",
                    f"dispute {dispute_id} won",
                ),
            )
        if dispute_id in (store.account_state(tx, paid.account_id).flag_reason or ""):
            store.set_flag(tx, paid.account_id, None)
        return PROCESSED

    return delivery.commit(effects)
