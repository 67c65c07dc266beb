"""Dashboard sign-ins, kept on the server so that signing out ends them."""

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from lunos.extensions import Timestamp, db
from lunos.models.account import utcnow


class DashboardSession(db.Model):
    """One signed-in browser. Its signed cookie carries a random session id; only that id's
    SHA-256 is kept here, so the table alone opens nothing. Signing out deletes the row, which
    ends that browser's session and no other; ``expires_at`` bounds it however the cookie is kept."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's session id
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
