"""Accounts and their ledger. Every change of balance is a ledger row with a unique source."""

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from lunos import ledger
from lunos.errors import InvalidRequest, NotFound
from lunos.extensions import db
from lunos.models import Account, LedgerEntry
from lunos.money import usd_to_micros
from lunos.services.prepared import transaction


def get_account(name: str) -> Account:
    account = db.session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise NotFound(f"no account named {name!r}")
    return account


def create_account(name: str, credits_micros: int = 0) -> Account:
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
    with transaction(db.engine) as tx:  # the session's transaction: the account and its credits together
        if credits_micros:
            ledger.post(
                tx,
                [
                    ledger.entry(
                        account.id, credits_micros, ledger.GRANT, f"account-opening:{account.id}", "opening credits"
                    )
                ],
            )
    db.session.refresh(account)
    return account


def balance_summary(account_id: int, low_balance_usd: float) -> dict:
    account = db.session.get(Account, account_id)
    available = account.balance_micros - account.reserved_micros
    return {
        "balance_micros": account.balance_micros,
        "reserved_micros": account.reserved_micros,
        "available_micros": available,
        "low_balance": available < usd_to_micros(low_balance_usd),
    }


def credit_totals(account_id: int) -> tuple[int, int]:
    """(credits, usage) in micro-USD: every non-usage row counts as credit (refunds and disputes
    negatively), usage debits as usage; credits - usage is the balance."""
    is_usage = LedgerEntry.kind == ledger.USAGE
    credits, usage = db.session.execute(
        select(
            func.coalesce(func.sum(case((is_usage, 0), else_=LedgerEntry.amount_micros)), 0),
            func.coalesce(func.sum(case((is_usage, -LedgerEntry.amount_micros), else_=0)), 0),
        ).where(LedgerEntry.account_id == account_id)
    ).one()
    return int(credits), int(usage)


def grant(account: Account, amount_micros: int, reason: str, source_ref: str) -> None:
    """A manual adjustment (positive or negative), written once per ``source_ref``."""
    if not amount_micros:
        raise InvalidRequest("an adjustment needs a non-zero amount")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("an adjustment needs a reason", param="reason")
    try:
        with transaction(db.engine) as tx:
            ledger.post(tx, [ledger.entry(account.id, amount_micros, ledger.ADJUSTMENT, source_ref, reason.strip())])
    except IntegrityError:
        raise InvalidRequest(f"adjustment {source_ref!r} was already applied") from None
    db.session.refresh(account)
