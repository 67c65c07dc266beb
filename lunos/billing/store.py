"""The billing tables, written in an event's one transaction, or read alone before it.

Everything here is a Core statement compiled once (``Prepared``): webhooks do not use the ORM
session, so no transaction of theirs stays open while Stripe is being called.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lunos import ledger
from lunos.extensions import db
from lunos.models import Account, BillingAttention, StripeCredit, StripeEvent, StripeRefund
from lunos.models.account import utcnow
from lunos.money import cents_to_micros
from lunos.services.keys import as_utc
from lunos.services.prepared import Prepared, Transaction, read

log = logging.getLogger("lunos.billing")


class _IgnoringDuplicates:
    """An INSERT ... ON CONFLICT DO NOTHING, for each backend: its row count says whether it
    inserted. On PostgreSQL a concurrent insert of the same key waits for the other transaction
    and then does nothing, so the duplicate is answered, never raised."""

    def __init__(self, model: type, **values: object) -> None:
        self._forms = {
            name: Prepared(dialect.insert(model).values(**values).on_conflict_do_nothing())
            for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
        }

    def run(self, tx: Transaction, values: dict) -> bool:
        return tx.run(self._forms[tx.dialect.name], values) == 1


# Events
_EVENT_SEEN = Prepared(select(StripeEvent.id).where(StripeEvent.id == bindparam("event")))
_RECORD_EVENT = _IgnoringDuplicates(
    StripeEvent, id=bindparam("event"), type=bindparam("kind"), processed_at=bindparam("at")
)


def event_seen(event_id: str) -> bool:
    return bool(read(db.engine, _EVENT_SEEN, {"event": event_id}))


def record_event(tx: Transaction, event_id: str, kind: str) -> bool:
    """Record the event id; False when another delivery of it got there first."""
    return _RECORD_EVENT.run(tx, {"event": event_id, "kind": kind[:100], "at": utcnow()})


# Accounts
@dataclass(frozen=True)
class Owner:
    """The account a Stripe object belongs to; ``link`` the customer id to record on it (an
    account found through the metadata Lunos set, before it knew its customer)."""

    account_id: int
    link: str | None = None


@dataclass(frozen=True)
class AccountState:
    id: int
    customer: str | None
    subscription: str | None
    status: str | None
    plan: str | None
    past_due_since: datetime | None
    sync: int
    period_credits: int
    flag_reason: str | None


_BY_CUSTOMER = Prepared(select(Account.id).where(Account.stripe_customer_id == bindparam("customer")))
_CUSTOMER_OF = Prepared(select(Account.stripe_customer_id).where(Account.id == bindparam("account")))
_LINK = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"), Account.stripe_customer_id.is_(None))
    .values(stripe_customer_id=bindparam("customer"))
)
_STATE = Prepared(
    select(
        Account.id,
        Account.stripe_customer_id,
        Account.stripe_subscription_id,
        Account.subscription_status,
        Account.plan,
        Account.past_due_since,
        Account.subscription_sync,
        Account.period_credits_micros,
        Account.flag_reason,
    ).where(Account.id == bindparam("account"))
)
_SYNC = Prepared(select(Account.subscription_sync).where(Account.id == bindparam("account")))
_SET_SUBSCRIPTION = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"))
    .values(
        plan=bindparam("new_plan"),
        stripe_subscription_id=bindparam("new_subscription"),
        subscription_status=bindparam("new_status"),
        past_due_since=bindparam("new_past_due_since"),
        subscription_sync=Account.subscription_sync + 1,
    )
)
_SET_PERIOD_CREDITS = Prepared(
    update(Account).where(Account.id == bindparam("account")).values(period_credits_micros=bindparam("credits"))
)
_SET_FLAG = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"))
    .values(flagged=bindparam("is_flagged"), flag_reason=bindparam("reason"))
)


def find_account(customer: str | None, account_hint: object = None) -> Owner | None:
    """The account of a Stripe customer; else the account Lunos named in the object's metadata
    (or a Checkout Session's client_reference_id), unless that account has another customer."""
    if customer:
        found = read(db.engine, _BY_CUSTOMER, {"customer": customer})
        if found:
            return Owner(found[0][0])
    hint = str(account_hint or "")
    if not hint.isdigit():
        return None
    found = read(db.engine, _CUSTOMER_OF, {"account": int(hint)})
    if not found or (customer and found[0][0] not in (None, customer)):
        return None
    return Owner(int(hint), link=customer if customer and found[0][0] is None else None)


def claim(tx: Transaction, owner: Owner) -> None:
    """Serialise on the account for the rest of ``tx`` (and record its customer if need be)."""
    ledger.lock_account(tx, owner.account_id)
    if owner.link:
        tx.run_many(_LINK, [{"account": owner.account_id, "customer": owner.link}])


def account_state(tx: Transaction, account_id: int) -> AccountState:
    row = tx.first(_STATE, {"account": account_id})
    return AccountState(
        row[0], row[1], row[2], row[3], row[4], as_utc(row[5]), int(row[6] or 0), int(row[7] or 0), row[8]
    )


def sync_counter(account_id: int) -> int:
    found = read(db.engine, _SYNC, {"account": account_id})
    return int(found[0][0] or 0) if found else 0


def set_subscription(
    tx: Transaction,
    account_id: int,
    plan: str | None,
    subscription: str | None,
    status: str | None,
    past_due_since: datetime | None,
) -> None:
    """The account's subscription as Stripe has it; bumps the sync counter."""
    tx.run_many(
        _SET_SUBSCRIPTION,
        [
            {
                "account": account_id,
                "new_plan": plan,
                "new_subscription": subscription,
                "new_status": status,
                "new_past_due_since": past_due_since,
            }
        ],
    )


def set_period_credits(tx: Transaction, account_id: int, micros: int) -> None:
    tx.run_many(_SET_PERIOD_CREDITS, [{"account": account_id, "credits": micros}])


def set_flag(tx: Transaction, account_id: int, reason: str | None) -> None:
    """Flag the account for ``reason``; None clears the flag."""
    tx.run_many(
        _SET_FLAG,
        [{"account": account_id, "is_flagged": reason is not None, "reason": reason[:500] if reason else None}],
    )


# Credits: what each Stripe source credited, and which payment paid for it
@dataclass(frozen=True)
class Paid:
    """What a payment (a PaymentIntent or a charge) credited to an account. ``matched`` False:
    Lunos has no record of it, and a refund or dispute of it is taken back one for one."""

    account_id: int
    amount_cents: int
    credited_micros: int
    matched: bool = True

    def share(self, cents: int) -> int:
        """The credits ``cents`` of this payment bought, in micro-USD, rounded down."""
        if not self.matched:
            return cents_to_micros(cents)
        if self.amount_cents <= 0:
            return 0
        return self.credited_micros * min(cents, self.amount_cents) // self.amount_cents


_CREDITED = Prepared(select(StripeCredit.id).where(StripeCredit.source == bindparam("source")).limit(1))
_ADD_CREDIT = Prepared(
    insert(StripeCredit), ["account_id", "source", "payment", "amount_cents", "credited_micros", "created_at"]
)
_PAID_BY = Prepared(
    select(StripeCredit.account_id, StripeCredit.amount_cents, StripeCredit.credited_micros).where(
        or_(StripeCredit.payment == bindparam("payment_intent"), StripeCredit.payment == bindparam("charge"))
    )
)


def credited(tx: Transaction, source: str) -> bool:
    return tx.first(_CREDITED, {"source": source}) is not None


def was_credited(source: str) -> bool:
    """``credited``, read alone: a hint that spares Stripe calls, not a decision."""
    return bool(read(db.engine, _CREDITED, {"source": source}))


def add_credits(
    tx: Transaction, account_id: int, source: str, payments: list[tuple[str, int]], credited_micros: int
) -> None:
    """Record what ``source`` credited, split over the payments (payment id, cents) that paid it
    in proportion to what each paid; the last takes the remainder, so the shares add up."""
    paid = sum(cents for _, cents in payments)
    rows, left = [], credited_micros
    for index, (payment, cents) in enumerate(payments):
        share = left if index == len(payments) - 1 else (credited_micros * cents // paid if paid else 0)
        left -= share
        rows.append(
            {
                "account_id": account_id,
                "source": source,
                "payment": payment or "",
                "amount_cents": cents,
                "credited_micros": share,
                "created_at": utcnow(),
            }
        )
    tx.run_many(_ADD_CREDIT, rows)


def paid_by(payment_intent: str | None, charge: str | None) -> Paid | None:
    """What the payment credited, from the records of the sources it paid (a PaymentIntent may
    pay several invoices)."""
    rows = read(db.engine, _PAID_BY, {"payment_intent": payment_intent or "-", "charge": charge or "-"})
    if not rows:
        return None
    return Paid(rows[0][0], sum(int(r[1]) for r in rows), sum(int(r[2]) for r in rows))


# Refunds
DEBITED, FAILED = "debited", "failed"


@dataclass(frozen=True)
class AppliedRefund:
    status: str
    debited_micros: int


_REFUNDS_OF = Prepared(
    select(StripeRefund.id, StripeRefund.status, StripeRefund.debited_micros).where(
        StripeRefund.charge == bindparam("charge")
    )
)
_ADD_REFUND = Prepared(
    insert(StripeRefund), ["id", "account_id", "charge", "amount_cents", "debited_micros", "status", "created_at"]
)
_FAIL_REFUND = Prepared(update(StripeRefund).where(StripeRefund.id == bindparam("refund")).values(status=FAILED))


def refunds_of(tx: Transaction, charge: str) -> dict[str, AppliedRefund]:
    return {row[0]: AppliedRefund(row[1], int(row[2])) for row in tx.rows(_REFUNDS_OF, {"charge": charge})}


def add_refund(
    tx: Transaction, refund: str, account_id: int, charge: str, cents: int, debited_micros: int, status: str
) -> None:
    tx.run_many(
        _ADD_REFUND,
        [
            {
                "id": refund,
                "account_id": account_id,
                "charge": charge,
                "amount_cents": cents,
                "debited_micros": debited_micros,
                "status": status,
                "created_at": utcnow(),
            }
        ],
    )


def fail_refund(tx: Transaction, refund: str) -> None:
    tx.run_many(_FAIL_REFUND, [{"refund": refund}])


# Attention
_NOTICE = _IgnoringDuplicates(
    BillingAttention,
    ref=bindparam("ref"),
    kind=bindparam("kind"),
    account_id=bindparam("account"),
    stripe_object=bindparam("stripe_object"),
    event_id=bindparam("event"),
    message=bindparam("message"),
    created_at=bindparam("at"),
)
_NOTICES = Prepared(
    select(
        BillingAttention.id,
        BillingAttention.kind,
        BillingAttention.account_id,
        BillingAttention.stripe_object,
        BillingAttention.event_id,
        BillingAttention.message,
        BillingAttention.created_at,
    )
    .order_by(BillingAttention.id.desc())
    .limit(bindparam("limit"))
)


def notice(
    tx: Transaction,
    ref: str,
    kind: str,
    message: str,
    *,
    account_id: int | None,
    stripe_object: str | None,
    event_id: str | None,
) -> None:
    """Log ``message`` and list it for the operator, once per ``ref``."""
    log.warning("billing needs attention: %s", message)
    _NOTICE.run(
        tx,
        {
            "ref": ref[:255],
            "kind": kind,
            "account": account_id,
            "stripe_object": stripe_object,
            "event": event_id,
            "message": message[:1000],
            "at": utcnow(),
        },
    )


def notices(limit: int) -> list[dict]:
    """The newest ``limit`` notices, newest first."""
    return [
        {
            "id": row[0],
            "kind": row[1],
            "account_id": row[2],
            "stripe_object": row[3],
            "event_id": row[4],
            "message": row[5],
            "created_at": as_utc(row[6]).isoformat(),
        }
        for row in read(db.engine, _NOTICES, {"limit": limit})
    ]
