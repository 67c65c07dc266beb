"""Dashboard sign-in: a management key exchanged for a signed session cookie, and CSRF tokens."""
import functools
import hashlib
import hmac
import secrets
from datetime import datetime, timezone

from flask import abort, current_app, g, redirect, request, session, url_for

from lunos.extensions import db
from lunos.models import Account, ApiKey
from lunos.models.api_key import MANAGEMENT
from lunos.services.keys import as_utc, authenticate


def _fingerprint(key):
    # Rotating or revoking the key ends its dashboard sessions.
    return hashlib.sha256(key.secret_hash.encode()).hexdigest()[:32]


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf():
    sent = request.form.get("csrf_token", "")
    if not session.get("csrf") or not hmac.compare_digest(sent, session["csrf"]):
        abort(400, "The form expired or did not come from this site: reload the page and try again.")


def sign_in(secret):
    """Start a session for a management key; returns None or the reason it was refused."""
    key = authenticate(secret.strip(), current_app.config["SECRET_KEY"])
    if key.kind != MANAGEMENT:
        return "Sign in with a management key (inference keys only call models)."
    row = db.session.get(ApiKey, key.id)
    session.clear()
    session.permanent = True
    session.update(key_id=row.id, fingerprint=_fingerprint(row), csrf=secrets.token_urlsafe(32))
    return None


def signed_in(view):
    """The page needs a live session: the key still exists, unrevoked, enabled, unexpired."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = db.session.get(ApiKey, session.get("key_id") or 0)
        if (key is None or key.revoked_at or key.disabled or key.kind != MANAGEMENT
                or session.get("fingerprint") != _fingerprint(key)
                or (key.expires_at and as_utc(key.expires_at) <= datetime.now(timezone.utc))):
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
