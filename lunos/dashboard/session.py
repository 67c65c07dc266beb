"""Dashboard sign-in: a management key exchanged for a session, and CSRF tokens.

The signed cookie carries a random session id and the CSRF token; the session itself is a
``dashboard_sessions`` row. A row per browser (rather than a "sessions valid after" time per
key) lets signing out end exactly that browser's session: others signed in with the same key,
a colleague's or another device's, carry on. The row's expiry is checked on every page, so a
cookie kept past it, or captured before sign-out, opens nothing.
"""

import functools
import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from flask import abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete

from lunos.extensions import db
from lunos.models import Account, ApiKey, DashboardSession
from lunos.models.api_key import MANAGEMENT
from lunos.services.keys import as_utc, authenticate


class CookieSession(SecureCookieSessionInterface):
    """Flask's signed-cookie session, which builds its signer (an itsdangerous serializer over
    the secret keys) on every request: here only for a request that brings the cookie. An API
    call brings none, and gets the empty session the stock interface would give it."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def _row_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _current_row() -> DashboardSession | None:
    session_id = session.get("sid")
    return db.session.get(DashboardSession, _row_id(session_id)) if isinstance(session_id, str) else None


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf():
    sent = request.form.get("csrf_token", "")
    if not session.get("csrf") or not hmac.compare_digest(sent, session["csrf"]):
        abort(400, "The form expired or did not come from this site: reload the page and try again.")


def sign_in(secret: str) -> str | None:
    """Start a session for a management key; returns None or the reason it was refused."""
    key = authenticate(secret.strip(), current_app.config["SECRET_KEY"])
    if key.kind != MANAGEMENT:
        return "Sign in with a management key (inference keys only call models)."
    now = datetime.now(UTC)
    replaced = _current_row()  # this browser's earlier session, if any, ends here
    if replaced is not None:
        db.session.delete(replaced)
    db.session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))  # keep the table small
    session_id = secrets.token_urlsafe(32)
    db.session.add(
        DashboardSession(id=_row_id(session_id), key_id=key.id, expires_at=now + current_app.permanent_session_lifetime)
    )
    db.session.commit()
    session.clear()  # a fresh id and CSRF token: nothing set before sign-in carries over
    session.permanent = True
    session.update(sid=session_id, csrf=secrets.token_urlsafe(32))
    return None


def sign_out() -> None:
    """End this browser's session on the server, then forget the cookie."""
    row = _current_row()
    if row is not None:
        db.session.delete(row)
        db.session.commit()
    session.clear()


def signed_in(view):
    """The page needs a live session (its row exists and has not expired) of a key that still
    works: unrevoked, enabled, unexpired, a management key."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        row = _current_row()
        now = datetime.now(UTC)
        key = db.session.get(ApiKey, row.key_id) if row is not None and as_utc(row.expires_at) > now else None
        if (
            key is None
            or key.revoked_at
            or key.disabled
            or key.kind != MANAGEMENT
            or (key.expires_at and as_utc(key.expires_at) <= now)
        ):
            session.clear()
            return redirect(url_for("dashboard.login"))
        account = db.session.get(Account, key.account_id)
        if account.suspended:
            session.clear()
            abort(403, "This account is suspended.")
        g.dashboard_key, g.account = key, account
        if request.method == "POST":
            check_csrf()
        return view(*args, **kwargs)

    return wrapper
