"""Accounts and their ledger. Every change of balance is a ledger row with a unique source."""
from decimal import Decimal, InvalidOperation

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lunos.catalog import MICRO_USD
from lunos.errors import InvalidRequest, NotFound
from lunos.extensions import db
from lunos.models import Account, LedgerEntry
from lunos.models.account import utcnow


def usd_to_micros(usd):
    try:
        amount = Decimal(str(usd))
    except InvalidOperation:
        raise InvalidRequest(f"not an amount of USD: {usd!r}") from None
    if not amount.is_finite():
        raise InvalidRequest(f"not an amount of USD: {usd!r}")
    return int((amount * MICRO_USD).to_integral_value())


def get_account(name):
    account = db.session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise NotFound(f"no account named {name!r}")
    return account


def create_account(name, credits_micros=0):
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidRequest("an account name is 1 to 100 characters")
    account = Account(name=name, balance_micros=0)
    db.session.add(account)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise InvalidRequest(f"an account named {name!r} already exists") from None
    if credits_micros:
        post_entry(account.id, credits_micros, kind="grant", source_ref=f"account-opening:{account.id}",
                   reason="opening credits")
    db.session.commit()
    db.session.refresh(account)
    return account


# For grants, top-ups, refunds and disputes; settlement writes its ledger rows itself, in its
# batch (services/credits.py).
_INSERT_ENTRY = insert(LedgerEntry)
_MOVE_BALANCE = (update(Account).where(Account.id == bindparam("account"))
                 .values(balance_micros=Account.balance_micros + bindparam("delta")))


def post_entry(account_id, amount_micros, *, kind, source_ref, reason=None):
    """Append a ledger row and move the cached balance with it, in the caller's transaction."""
    connection = db.session.connection()
    connection.execute(_INSERT_ENTRY, {"account_id": account_id, "amount_micros": amount_micros, "kind": kind,
                                       "source_ref": source_ref, "reason": reason, "created_at": utcnow()})
    connection.execute(_MOVE_BALANCE, {"account": account_id, "delta": amount_micros})


def balance_summary(account_id, low_balance_usd):
    account = db.session.get(Account, account_id)
    available = account.balance_micros - account.reserved_micros
    return {"balance_micros": account.balance_micros, "reserved_micros": account.reserved_micros,
            "available_micros": available, "low_balance": available < usd_to_micros(low_balance_usd)}


def credit_totals(account_id):
    """(credits, usage) in micro-USD: every non-usage row counts as credit (refunds and disputes
    negatively), usage debits as usage; credits - usage is the balance."""
    is_usage = LedgerEntry.kind == "usage"
    credits, usage = db.session.execute(
        select(func.coalesce(func.sum(case((is_usage, 0), else_=LedgerEntry.amount_micros)), 0),
               func.coalesce(func.sum(case((is_usage, -LedgerEntry.amount_micros), else_=0)), 0))
        .where(LedgerEntry.account_id == account_id)).one()
    return int(credits), int(usage)


def grant(account, amount_micros, reason, source_ref):
    """A manual adjustment (positive or negative), written once per ``source_ref``."""
    if not amount_micros:
        raise InvalidRequest("an adjustment needs a non-zero amount")
    if not reason or not reason.strip():
        raise InvalidRequest("an adjustment needs a reason")
    try:
        post_entry(account.id, amount_micros, kind="adjustment", source_ref=source_ref, reason=reason.strip())
        db.session.commit()
        db.session.refresh(account)
    except IntegrityError:
        db.session.rollback()
        raise InvalidRequest(f"adjustment {source_ref!r} was already applied") from None
