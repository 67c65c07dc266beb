"""What Lunos keeps of Stripe: events seen, payments it credited, refunds it applied, and what
needs an operator's attention."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from lunos.extensions import Timestamp, db
from lunos.models.account import utcnow


class StripeEvent(db.Model):
    """Stripe webhook events seen, so each is processed at most once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


class StripeCredit(db.Model):
    """What one Stripe source (a top-up's Checkout Session, a subscription invoice) credited, and
    the payment that paid for it: a later refund or dispute of that payment (a PaymentIntent id,
    or a charge id for a charge without one) takes back the same share of these credits."""

    __tablename__ = "stripe_credits"
    __table_args__ = (UniqueConstraint("source", "payment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    source: Mapped[str] = mapped_column(String(255))  # cs_... or in_...
    payment: Mapped[str] = mapped_column(String(255), index=True)  # pi_... or ch_...; "" when nothing was paid
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # what the payment paid towards the source
    credited_micros: Mapped[int] = mapped_column(BigInteger)  # this payment's share of the credits
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


class StripeRefund(db.Model):
    """A refund as Lunos applied it: debited once while it stands, given back once if it fails."""

    __tablename__ = "stripe_refunds"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # re_...
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    charge: Mapped[str] = mapped_column(String(255), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    debited_micros: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # debited, failed
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


class BillingAttention(db.Model):
    """Something in Stripe that Lunos did not turn into credits by itself (another currency, a
    payment it has no record of, a second subscription): listed for the operator."""

    __tablename__ = "billing_attention"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(255), unique=True)  # one notice per cause
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    stripe_object: Mapped[str | None] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
