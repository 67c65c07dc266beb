"""API keys: creation, authentication, and management.

Secrets look like ``sk-lunos-<random>``. Only HMAC-SHA256(server secret, key) and a short
display prefix are stored, so a database leak does not leak usable keys.
"""

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import bindparam, select

from lunos.catalog import ModelEntry
from lunos.errors import AuthenticationFailed, NotFound, PermissionDenied
from lunos.extensions import db
from lunos.models import Account, ApiKey
from lunos.models.api_key import INFERENCE, MANAGEMENT
from lunos.schemas import is_row_id
from lunos.services.prepared import Prepared, read

KEY_PREFIX = "sk-lunos-"


@dataclass(frozen=True)
class KeyIdentity:
    """Who is calling: what a request needs of its key and account, read in one query."""

    id: int
    account_id: int
    name: str
    prefix: str
    kind: str
    requests_per_minute: int | None
    allowed_models: list | None
    allowed_apps: list | None
    credit_limit_micros: int | None
    credit_limit_reset: str | None
    plan: str | None
    subscription_status: str | None
    past_due_since: datetime | None
    # The account's balance less its holds when the key was looked up (perhaps a second ago):
    # for refusing a request that cannot be paid before reading its body; the reservation decides.
    available_micros: int = 0


# Runs on every request: plain columns, compiled once; KeyIdentity's fields first, in its order.
_LOOKUP = Prepared(
    select(
        ApiKey.id,
        ApiKey.account_id,
        ApiKey.name,
        ApiKey.prefix,
        ApiKey.kind,
        ApiKey.requests_per_minute,
        ApiKey.allowed_models,
        ApiKey.allowed_apps,
        ApiKey.credit_limit_micros,
        ApiKey.credit_limit_reset,
        Account.plan,
        Account.subscription_status,
        Account.past_due_since,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        ApiKey.disabled,
        Account.suspended,
        Account.balance_micros - Account.reserved_micros,
    )
    .join(Account, Account.id == ApiKey.account_id)
    .where(ApiKey.secret_hash == bindparam("secret_hash"))
)


def hash_secret(secret: str, server_secret: str) -> str:
    return hmac.new(server_secret.encode(), secret.encode(), hashlib.sha256).hexdigest()


Moment = TypeVar("Moment", datetime, None)  # as_utc gives back a datetime for a datetime, None for None


def as_utc(moment: Moment) -> Moment:
    # SQLite hands back naive datetimes, written as UTC; PostgreSQL aware ones, in its session's zone.
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_key(
    account: Account, server_secret: str, name: str | None = "default", kind: str = INFERENCE, **settings: Any
) -> tuple[ApiKey, str]:
    """Return (ApiKey, secret). The secret is not kept anywhere: show it once."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        account_id=account.id,
        name=name or "default",
        kind=kind,
        prefix=secret[: len(KEY_PREFIX) + 6],
        secret_hash=hash_secret(secret, server_secret),
        **settings,
    )
    db.session.add(key)
    db.session.commit()
    return key, secret


class _Flight:
    """One lookup in flight, and what it found, for the callers that wait for it."""

    __slots__ = ("done", "generation", "row")

    def __init__(self, generation: int):
        self.done = threading.Event()
        self.generation = generation
        self.row = None


class KeyCache:
    """What a key's lookup found, kept by this worker for ``ttl_s`` (``LUNOS_KEY_CACHE_S``, at
    most a second): a revoked, disabled or expired key, or a suspended account, is refused on
    every worker and instance within that. Changes made through this worker clear it at once,
    and a lookup that was in flight when they did is neither kept nor shared.
    Unknown keys are never kept (guessing must not fill it); it is emptied when full.

    One lookup per key is in flight at a time: a burst of requests with one key, arriving as its
    row expires, takes what that lookup found instead of each taking a pooled connection for it.
    A lookup that failed or found nothing is not shared: each caller looks for itself."""

    MAX_KEYS = 10_000
    FETCH_WAIT_S = 10.0  # a lookup in flight longer than this is not waited for

    def __init__(self, ttl_s: float):
        self.ttl_s = ttl_s
        self._found: dict[str, tuple[float, tuple]] = {}
        self._fetching: dict[str, _Flight] = {}
        self._generation = 0  # bumped by clear(): what was read before it is stale

    def get(self, secret_hash: str) -> tuple | None:
        hit = self._found.get(secret_hash)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl_s else None

    def lookup(self, secret_hash: str, fetch: Callable[[], tuple | None]) -> tuple | None:
        """The kept row, or ``fetch()``'s (None: no such key), kept when found."""
        if self.ttl_s <= 0:
            return fetch()
        row = self.get(secret_hash)
        if row is not None:
            return row
        flight = self._fetching.get(secret_hash)
        if flight is not None and flight.done.wait(self.FETCH_WAIT_S) and flight.generation == self._generation:
            if flight.row is not None:
                return flight.row
        flight = self._fetching[secret_hash] = _Flight(self._generation)
        try:
            read_at = time.monotonic()  # when it was sent: the row's age counts the wait for it
            row = fetch()
            if row is not None and flight.generation == self._generation:
                if len(self._found) >= self.MAX_KEYS:
                    self._found.clear()
                self._found[secret_hash] = (read_at, row)
                flight.row = row
            return row
        finally:
            if self._fetching.get(secret_hash) is flight:
                del self._fetching[secret_hash]
            flight.done.set()

    def clear(self) -> None:
        self._generation += 1
        self._found.clear()


def key_cache() -> KeyCache:
    extensions = current_app.extensions
    if "lunos-key-cache" not in extensions:
        extensions["lunos-key-cache"] = KeyCache(current_app.config["KEY_CACHE_S"])
    return extensions["lunos-key-cache"]


def authenticate(secret: str | None, server_secret: str) -> KeyIdentity:
    if not secret:
        raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer sk-lunos-...' or 'X-API-Key'.")
    if not secret.startswith(KEY_PREFIX):
        raise AuthenticationFailed("Incorrect API key provided.")
    secret_hash = hash_secret(secret, server_secret)
    row = key_cache().lookup(secret_hash, lambda: _look_up(secret_hash))
    if row is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    *identity, past_due_since, revoked_at, expires_at, disabled, suspended, available = row
    if revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.")
    if disabled:
        raise AuthenticationFailed("This API key is disabled.")
    if expires_at is not None and as_utc(expires_at) <= datetime.now(UTC):
        raise AuthenticationFailed("This API key has expired.")
    if suspended:
        raise PermissionDenied("This account is suspended: contact the operator of this gateway.")
    return KeyIdentity(*identity, as_utc(past_due_since), int(available or 0))


def _look_up(secret_hash: str) -> tuple | None:
    # The connection goes back to the pool at once: rate limits come next, and a Redis round
    # trip (or any other yield) must not keep it, nor SQLite's read snapshot, open.
    found = read(db.engine, _LOOKUP, {"secret_hash": secret_hash})
    return found[0] if found else None


def require_kind(key: KeyIdentity, kind: str) -> None:
    if key.kind != kind:
        if kind == MANAGEMENT:
            require_management(key)
        raise PermissionDenied("Management keys cannot call models: use an inference key.")


# What a key may do besides calling models (inference keys only) and managing keys (management
# keys only). One rule, applied by lunos/api/auth.py:
#   billing (checkout, subscribe, portal, subscription), apps    management keys
#   usage, usage events, generations                             management: the whole account;
#                                                                inference: its own key's requests
#   /v1/key, /v1/balance, /v1/credits                            either kind
def require_management(key: KeyIdentity, what: str = "This endpoint") -> None:
    """Refuse an inference key (403 permission_error) where only a management key may go."""
    if key.kind != MANAGEMENT:
        raise PermissionDenied(
            f"{what} needs a management key; this is an inference key, which calls models and "
            "reads only its own usage, generations, key and balance."
        )


def confined_key_id(key: KeyIdentity) -> int | None:
    """The key whose requests alone this key may read: its own for an inference key; None
    (every key of the account) for a management key."""
    return None if key.kind == MANAGEMENT else key.id


def check_key_scope(key: KeyIdentity, models: Iterable[ModelEntry], app_id: str) -> None:
    """A key's own restrictions, on top of its plan's: the models and apps it may use."""
    if key.allowed_apps is not None and app_id not in key.allowed_apps:
        raise PermissionDenied(f"This key may not be used for the app '{app_id}'.", param="X-App-ID")
    if key.allowed_models is not None:
        for model in models:
            if not any(fnmatchcase(model.id, pattern) for pattern in key.allowed_models):
                raise PermissionDenied(f"This key may not use the model '{model.id}'.", param="model")


def window_start(reset: str | None, now: datetime | None = None) -> datetime | None:
    """Start of the current credit-limit window (UTC): today, this week (Monday), this month."""
    now = now or datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        return day
    if reset == "weekly":
        return day - timedelta(days=day.weekday())
    if reset == "monthly":
        return day.replace(day=1)
    return None


def get_key(account_id: int, key_id: int) -> ApiKey:
    key = db.session.get(ApiKey, key_id) if is_row_id(key_id) else None
    if key is None or key.account_id != account_id:
        raise NotFound(f"No key with id {key_id}.", param="id")
    return key


def list_keys(account_id: int) -> Sequence[ApiKey]:
    return db.session.scalars(select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id)).all()


def update_key(key: ApiKey, changes: dict[str, Any]) -> ApiKey:
    for field, value in changes.items():
        setattr(key, field, value)
    if "credit_limit_reset" in changes:
        key.window_start = None  # the next request starts a window of the new length
    db.session.commit()
    key_cache().clear()
    return key


def revoke_key(key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        db.session.commit()
        key_cache().clear()
    return key
