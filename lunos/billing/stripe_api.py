"""The Stripe client, built from settings; its failures mapped to Lunos errors; and the objects
webhooks read from Stripe, as plain dicts.

Every call first ends the ORM session's transaction (committing the request's own work): no
transaction is open while Stripe answers. On SQLite an open write transaction would hold the
database's one write lock, and every other write of the gevent worker would wait on it.
"""

import contextlib
from collections.abc import Callable, Iterator, Mapping

import stripe

from lunos.errors import InvalidRequest, LunosError, ServiceUnavailable, UpstreamFailed
from lunos.extensions import db
from lunos.services.prepared import in_session_transaction

LIST_LIMIT = 100  # Stripe's largest page


def client(config: Mapping) -> stripe.StripeClient:
    secret = config["STRIPE_SECRET_KEY"]
    if not secret:
        raise ServiceUnavailable("Billing is not configured on this gateway (STRIPE_SECRET_KEY is not set).")
    return stripe.StripeClient(secret, base_addresses={"api": config["STRIPE_API_BASE"]}, max_network_retries=2)


def end_session_transaction() -> None:
    """Commit what the request's ORM session has open, so nothing is held while Stripe answers."""
    if in_session_transaction():
        db.session.commit()


def _as_lunos_error(exc: stripe.StripeError) -> LunosError:
    if isinstance(exc, stripe.InvalidRequestError):
        return InvalidRequest(f"Stripe refused the request: {exc.user_message or exc}")
    return UpstreamFailed(f"Stripe failed: {exc.user_message or exc.__class__.__name__}")


@contextlib.contextmanager
def calling_stripe() -> Iterator[None]:
    """Stripe's errors as Lunos errors: a bad request stays a 400, the rest are upstream failures."""
    end_session_transaction()
    try:
        yield
    except stripe.StripeError as exc:
        raise _as_lunos_error(exc) from None


def _retrieved(fetch: Callable[[], stripe.StripeObject]) -> dict | None:
    """The object as a dict; None when Stripe has no such object."""
    end_session_transaction()
    try:
        return fetch().to_dict()
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404:
            return None
        raise _as_lunos_error(exc) from None
    except stripe.StripeError as exc:
        raise _as_lunos_error(exc) from None


def _listed(listing: Callable[[], stripe.ListObject]) -> list[dict]:
    """Every object of a list, page after page."""
    with calling_stripe():
        return [item.to_dict() for item in listing().auto_paging_iter()]


def subscription(config: Mapping, subscription_id: str) -> dict | None:
    return _retrieved(lambda: client(config).v1.subscriptions.retrieve(subscription_id))


def charge(config: Mapping, charge_id: str) -> dict | None:
    return _retrieved(lambda: client(config).v1.charges.retrieve(charge_id))


def refunds(config: Mapping, charge_id: str) -> list[dict]:
    """Every refund of a charge, whatever its status."""
    return _listed(lambda: client(config).v1.refunds.list(params={"charge": charge_id, "limit": LIST_LIMIT}))


def invoice_payments(config: Mapping, invoice_id: str) -> list[dict]:
    """The paid InvoicePayments of an invoice: since API version 2025-03-31 (basil) a charge no
    longer names its invoice; these map an invoice to the PaymentIntents (or charges) that paid it."""
    return _listed(
        lambda: client(config).v1.invoice_payments.list(
            params={"invoice": invoice_id, "status": "paid", "limit": LIST_LIMIT}
        )
    )
