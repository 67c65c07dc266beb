"""Metering: one usage event per chat completion, and the reservations that guard balances."""

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from lunos.extensions import Timestamp, db
from lunos.models.account import utcnow


class Reservation(db.Model):
    """The worst-case cost of a request in flight, held against its account's balance."""

    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the request id
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    # Set when the amount is also held against the key's credit limit.
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
    # The worker holding it, which proves it alive by moving heartbeat_at (services/housekeeping.py):
    # release-reservations frees only holds whose heartbeat stopped.
    worker: Mapped[str | None] = mapped_column(String(100), index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)


class UsageEvent(db.Model):
    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_account_created", "account_id", "created_at"),
        Index("ix_usage_account_app_created", "account_id", "app_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the request id
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    app_id: Mapped[str] = mapped_column(String(64), default="unknown")
    requested_model: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))  # the model that answered
    provider: Mapped[str | None] = mapped_column(String(100))
    stream: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(32))  # ok, upstream_error, client_disconnected, refused...
    http_status: Mapped[int] = mapped_column(default=200)
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    # Buckets of prompt_tokens (which counts them all): cache reads, and cache writes (5-minute,
    # and 1-hour where the upstream reports them); reasoning_tokens are part of completion_tokens.
    cached_tokens: Mapped[int] = mapped_column(default=0)
    cache_write_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    cache_write_1h_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(default=0)
    usage_estimated: Mapped[bool] = mapped_column(default=False)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the account could not cover when the answer cost more than was reserved.
    unbilled_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[int] = mapped_column(default=0)
    ttft_ms: Mapped[int | None]
    attempts: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


class App(db.Model):
    """An application an account registered with a display name. Unregistered X-App-ID values
    are still recorded on usage events and listed."""

    __tablename__ = "apps"
    __table_args__ = (UniqueConstraint("account_id", "app_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    app_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())


# Upper bounds (ms) of the latency histogram kept per hour; the last bucket is open-ended.
LATENCY_BUCKETS_MS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 60000, None)


class UsageHourly(db.Model):
    """Usage events rolled up per account, hour, app, model and key, in the same transaction as
    each event: analytics read this instead of scanning every event. Latency percentiles come
    from its histogram (lat_0 .. lat_15, counts per LATENCY_BUCKETS_MS bucket)."""

    __tablename__ = "usage_hourly"
    __table_args__ = (UniqueConstraint("account_id", "hour", "app_id", "model", "key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    hour: Mapped[datetime] = mapped_column(Timestamp)
    app_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    key_id: Mapped[int] = mapped_column(BigInteger)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    lat_0: Mapped[int] = mapped_column(default=0)
    lat_1: Mapped[int] = mapped_column(default=0)
    lat_2: Mapped[int] = mapped_column(default=0)
    lat_3: Mapped[int] = mapped_column(default=0)
    lat_4: Mapped[int] = mapped_column(default=0)
    lat_5: Mapped[int] = mapped_column(default=0)
    lat_6: Mapped[int] = mapped_column(default=0)
    lat_7: Mapped[int] = mapped_column(default=0)
    lat_8: Mapped[int] = mapped_column(default=0)
    lat_9: Mapped[int] = mapped_column(default=0)
    lat_10: Mapped[int] = mapped_column(default=0)
    lat_11: Mapped[int] = mapped_column(default=0)
    lat_12: Mapped[int] = mapped_column(default=0)
    lat_13: Mapped[int] = mapped_column(default=0)
    lat_14: Mapped[int] = mapped_column(default=0)
    lat_15: Mapped[int] = mapped_column(default=0)
