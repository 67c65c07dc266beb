"""API key creation and authentication.

Secrets look like ``sk-lunos-<random>``. Only HMAC-SHA256(server secret, key) and a short
display prefix are stored, so a database leak does not leak usable keys.
"""
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import bindparam, select

from lunos.errors import AuthenticationFailed
from lunos.extensions import db
from lunos.models import Account, ApiKey

KEY_PREFIX = "sk-lunos-"


@dataclass(frozen=True)
class KeyIdentity:
    """Who is calling: what a request needs of its key and account, read in one query."""
    id: int
    account_id: int
    name: str
    prefix: str
    requests_per_minute: int | None
    plan: str | None
    subscription_status: str | None
    past_due_since: datetime | None


# Runs on every request: plain columns, and one statement object so SQLAlchemy reuses its
# compiled form (building the WHERE clause per call costs four times the query).
_LOOKUP = (select(ApiKey.id, ApiKey.account_id, ApiKey.name, ApiKey.prefix, ApiKey.requests_per_minute,
                  Account.plan, Account.subscription_status, Account.past_due_since,
                  ApiKey.revoked_at, ApiKey.expires_at)
           .join(Account, Account.id == ApiKey.account_id)
           .where(ApiKey.secret_hash == bindparam("secret_hash")))


def hash_secret(secret, server_secret):
    return hmac.new(server_secret.encode(), secret.encode(), hashlib.sha256).hexdigest()


def create_key(account, server_secret, name="default", expires_at=None):
    """Return (ApiKey, secret). The secret is not kept anywhere: show it once."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(account_id=account.id, name=name or "default", prefix=secret[:len(KEY_PREFIX) + 6],
                 secret_hash=hash_secret(secret, server_secret), expires_at=expires_at)
    db.session.add(key)
    db.session.commit()
    return key, secret


def as_utc(moment):
    # SQLite hands back naive datetimes; they were written as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def authenticate(secret, server_secret):
    if not secret:
        raise AuthenticationFailed(
            "Missing API key: send 'Authorization: Bearer sk-lunos-...' or 'X-API-Key'.")
    if not secret.startswith(KEY_PREFIX):
        raise AuthenticationFailed("Incorrect API key provided.")
    row = db.session.connection().execute(
        _LOOKUP, {"secret_hash": hash_secret(secret, server_secret)}).first()
    if row is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    if row.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.")
    if row.expires_at is not None and as_utc(row.expires_at) <= datetime.now(timezone.utc):
        raise AuthenticationFailed("This API key has expired.")
    return KeyIdentity(row.id, row.account_id, row.name, row.prefix, row.requests_per_minute, row.plan,
                       row.subscription_status, as_utc(row.past_due_since) if row.past_due_since else None)
