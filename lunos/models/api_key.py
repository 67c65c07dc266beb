"""API keys: only a keyed hash of the secret and a short display prefix are stored."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lunos.extensions import Timestamp, db
from lunos.models.account import Account, utcnow

INFERENCE, MANAGEMENT = "inference", "management"
LIMIT_RESETS = ("daily", "weekly", "monthly")


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    # inference keys call models; management keys manage keys, billing, apps and usage, and call no model.
    kind: Mapped[str] = mapped_column(String(16), default=INFERENCE, server_default=INFERENCE)
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    disabled: Mapped[bool] = mapped_column(default=False, server_default="0")
    requests_per_minute: Mapped[int | None]  # overrides the plan's when set
    allowed_models: Mapped[list | None] = mapped_column(JSON)  # glob patterns; None: what the plan allows
    allowed_apps: Mapped[list | None] = mapped_column(JSON)  # X-App-ID values; None: any
    # Spending cap of this key, in micro-USD, over the window named by credit_limit_reset (None:
    # for the key's whole life). spent/reserved are the window's, moved with the account's.
    credit_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    credit_limit_reset: Mapped[str | None] = mapped_column(String(16))
    window_start: Mapped[datetime | None] = mapped_column(Timestamp)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    account: Mapped[Account] = relationship()
