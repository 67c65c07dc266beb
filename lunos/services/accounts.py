"""Accounts and their ledger. Every change of balance is a ledger row with a unique source."""
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from lunos.catalog import MICRO_USD
from lunos.errors import InvalidRequest, NotFound
from lunos.extensions import db
from lunos.models import Account, LedgerEntry


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
        post_entry(account, credits_micros, kind="grant", source_ref=f"account-opening:{account.id}",
                   reason="opening credits")
    db.session.commit()
    return account


def post_entry(account, amount_micros, *, kind, source_ref, reason=None):
    """Append a ledger row and move the cached balance with it, in the caller's transaction."""
    db.session.add(LedgerEntry(account_id=account.id, amount_micros=amount_micros, kind=kind,
                               source_ref=source_ref, reason=reason))
    account.balance_micros = Account.balance_micros + amount_micros
    db.session.flush()
