"""One webhook delivery: the event's fields read defensively, and its effects committed in one
short transaction that first records the event id.

A handler does every Stripe call it needs first, with no transaction open, then calls
``Delivery.commit``: record the event id (a delivery of it already recorded, or being recorded
by another worker right now, makes this a ``duplicate``), lock the account, apply, commit. The
ledger's unique source references are the last line of defence: should one still refuse a
row, the whole transaction rolls back and the delivery answers ``duplicate`` too.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from lunos.billing import store
from lunos.errors import InvalidRequest
from lunos.extensions import db
from lunos.plans import Plans
from lunos.services.prepared import Transaction, transaction

log = logging.getLogger("lunos.billing")

PROCESSED, DUPLICATE, IGNORED = "processed", "duplicate", "ignored"
USD = "usd"


class Stale(Exception):
    """What was fetched from Stripe may be older than what another delivery committed since."""


class _AlreadyRecorded(Exception):
    pass


@dataclass(frozen=True)
class Delivery:
    id: str
    type: str
    obj: dict
    plans: Plans
    config: Mapping

    def commit(self, effects: Callable[[Transaction], str]) -> str:
        """Record the event and apply ``effects`` in one transaction; their outcome, or
        ``duplicate``. ``Stale`` raised by the effects rolls everything back and propagates."""
        try:
            with transaction(db.engine) as tx:
                if not store.record_event(tx, self.id, self.type):
                    raise _AlreadyRecorded
                return effects(tx)
        except _AlreadyRecorded:
            return DUPLICATE
        except IntegrityError as exc:
            log.warning("stripe event %s (%s) would have applied twice; rolled back: %s", self.id, self.type, exc.orig)
            return DUPLICATE

    def nothing(self, why: str) -> str:
        """Record the event, change nothing."""
        log.info("stripe event %s (%s): %s", self.id, self.type, why)
        return self.commit(lambda tx: IGNORED)

    def notice(
        self, tx: Transaction, ref: str, kind: str, message: str, *, account_id: int | None, stripe_object: str | None
    ) -> None:
        store.notice(tx, ref, kind, message, account_id=account_id, stripe_object=stripe_object, event_id=self.id)


def text(obj: Mapping, key: str) -> str | None:
    """A string field, or the id of an expanded object; None when absent."""
    value = obj.get(key)
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def required_text(obj: Mapping, key: str) -> str:
    value = text(obj, key)
    if value is None:
        raise InvalidRequest(f"Invalid Stripe webhook: the {obj.get('object') or 'object'} has no {key}")
    return value


def mapping(obj: Mapping, key: str) -> Mapping:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def amount(obj: Mapping, key: str, default: int = 0) -> int:
    """An integer amount (Stripe's smallest currency unit); a malformed one is a 400."""
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"Invalid Stripe webhook: {key} is not an integer amount")
    return value


def currency(obj: Mapping) -> str:
    """The object's currency, lower case; USD when it names none."""
    return (text(obj, "currency") or USD).lower()


def account_hint(obj: Mapping) -> str | None:
    """The account id Lunos put on the objects it created (metadata, client_reference_id)."""
    return mapping(obj, "metadata").get("lunos_account_id") or text(obj, "client_reference_id")
