"""Stripe webhook events seen, so each is processed at most once."""
from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from lunos.extensions import Timestamp, db
from lunos.models.account import utcnow


class StripeEvent(db.Model):
    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
