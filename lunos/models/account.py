"""An account holds credits; its balance is the sum of its append-only ledger."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from lunos.extensions import Timestamp, db


def utcnow():
    return datetime.now(UTC)


class Account(db.Model):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Cached sum of ledger_entries.amount_micros, moved in the same transaction as each row.
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # Cached sum of open reservations.amount_micros: available = balance - reserved.
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    plan: Mapped[str | None] = mapped_column(String(50))  # None: the default plan
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    past_due_since: Mapped[datetime | None] = mapped_column(Timestamp)
    # Bumped by every subscription sync: a sync applies what it fetched from Stripe only if no
    # other sync committed since it read this (lunos/billing/subscriptions.py).
    subscription_sync: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The monthly credits granted for the current period: an upgrade's invoice grants the rest.
    period_credits_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    flagged: Mapped[bool] = mapped_column(default=False, server_default="0")
    flag_reason: Mapped[str | None] = mapped_column(String(500))
    suspended: Mapped[bool] = mapped_column(default=False, server_default="0")  # no key of it works
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


class LedgerEntry(db.Model):
    """One change of balance, in micro-USD. ``source_ref`` is unique so a replay cannot apply twice."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))  # grant, topup, subscription, usage, refund, dispute, adjustment
    source_ref: Mapped[str] = mapped_column(String(255), unique=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
