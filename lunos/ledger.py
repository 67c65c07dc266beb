"""The ledger: the one writer of balance changes.

Every change of an account's balance is a row here, with a unique ``source_ref`` naming what
caused it (a usage event, a Stripe object, an operator's reference), and the account's cached
``balance_micros`` moves in the same transaction by the same amount. ``post`` is the only code
that inserts ledger rows or moves a balance; it runs inside ``prepared.transaction``.
"""

from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update

from lunos.models import Account, LedgerEntry
from lunos.models.account import utcnow
from lunos.services.prepared import Prepared, Transaction

# Entry kinds.
GRANT = "grant"  # opening credits of a new account
TOPUP = "topup"  # credits bought (Stripe Checkout)
SUBSCRIPTION = "subscription"  # a plan's credits for a paid period
USAGE = "usage"  # a settled request's cost
REFUND = "refund"  # a payment refunded: its credits taken back
REFUND_REVERSAL = "refund_reversal"  # a refund that failed: the credits given back
DISPUTE = "dispute"  # a payment disputed: its amount taken back
DISPUTE_REVERSAL = "dispute_reversal"  # a dispute won: the amount given back
ADJUSTMENT = "adjustment"  # an operator's manual change
KINDS = (GRANT, TOPUP, SUBSCRIPTION, USAGE, REFUND, REFUND_REVERSAL, DISPUTE, DISPUTE_REVERSAL, ADJUSTMENT)

_COLUMNS = ["account_id", "amount_micros", "kind", "source_ref", "reason", "created_at"]
_INSERT = Prepared(insert(LedgerEntry), _COLUMNS)
# One statement per account moves both the balance and, for settlements, the reservation.
_MOVE = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"))
    .values(
        balance_micros=Account.balance_micros + bindparam("delta"),
        reserved_micros=Account.reserved_micros - bindparam("release"),
    )
)
_EXISTS = Prepared(select(LedgerEntry.id).where(LedgerEntry.source_ref == bindparam("source_ref")))
_AMOUNT = Prepared(select(LedgerEntry.amount_micros).where(LedgerEntry.source_ref == bindparam("source_ref")))
_SUM_PREFIX = Prepared(
    select(LedgerEntry.amount_micros).where(LedgerEntry.source_ref.like(bindparam("pattern"), escape="\\"))
)
# An UPDATE that changes nothing: PostgreSQL's row lock on the account, SQLite's write lock.
_LOCK = Prepared(
    update(Account).where(Account.id == bindparam("account")).values(balance_micros=Account.balance_micros)
)


def entry(
    account_id: int,
    amount_micros: int,
    kind: str,
    source_ref: str,
    reason: str | None = None,
    created_at: datetime | None = None,
) -> dict:
    """One ledger row, ready for ``post``."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    return {
        "account_id": account_id,
        "amount_micros": int(amount_micros),
        "kind": kind,
        "source_ref": source_ref,
        "reason": reason[:500] if reason else reason,
        "created_at": created_at or utcnow(),
    }


def post(tx: Transaction, entries: list[dict], released: dict[int, int] | None = None) -> None:
    """Insert ``entries`` and move each account's cached balance by their sum, in ``tx``.

    ``released`` (account id -> micro-USD) also takes that much off the accounts' reserved
    amounts in the same statement: a settlement turns a reservation into a debit at once. A
    source_ref posted before raises the database's IntegrityError: the unique reference is the
    last line of defence against applying anything twice."""
    deltas = defaultdict(int)
    for row in entries:
        deltas[row["account_id"]] += row["amount_micros"]
    releases = released or {}
    moves = [
        {"account": account_id, "delta": deltas.get(account_id, 0), "release": releases.get(account_id, 0)}
        for account_id in sorted(set(deltas) | set(releases))
    ]
    if entries:
        tx.run_many(_INSERT, entries)
    if moves:
        tx.run_many(_MOVE, moves)


def posted(tx: Transaction, source_ref: str) -> bool:
    """Whether an entry with ``source_ref`` exists."""
    return tx.first(_EXISTS, {"source_ref": source_ref}) is not None


def amount(tx: Transaction, source_ref: str) -> int | None:
    """The amount of the entry posted with ``source_ref``; None when there is none."""
    found = tx.first(_AMOUNT, {"source_ref": source_ref})
    return None if found is None else int(found[0])


def post_once(tx: Transaction, row: dict) -> bool:
    """Post ``row`` unless its source_ref was posted already; True when it was posted now.

    Callers serialise on the account first (``lock_account``), so the check sees every earlier
    posting; the unique index still refuses a second one should anything slip through."""
    if not row["amount_micros"] or posted(tx, row["source_ref"]):
        return False
    post(tx, [row])
    return True


def total(tx: Transaction, prefix: str) -> int:
    """The sum of every entry whose source_ref starts with ``prefix``."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return sum(amount for (amount,) in tx.rows(_SUM_PREFIX, {"pattern": pattern}))


def lock_account(tx: Transaction, account_id: int) -> None:
    """Serialise on the account until ``tx`` ends: what runs after this in ``tx`` sees every
    change committed before, and no other transaction changes the account meanwhile."""
    tx.run_many(_LOCK, [{"account": account_id}])
