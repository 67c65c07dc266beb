"""The Stripe client, built from settings; its failures mapped to Lunos errors."""
import contextlib

import stripe

from lunos.errors import InvalidRequest, ServiceUnavailable, UpstreamFailed


def client(config):
    secret = config["STRIPE_SECRET_KEY"]
    if not secret:
        raise ServiceUnavailable("Billing is not configured on this gateway (STRIPE_SECRET_KEY is not set).")
    return stripe.StripeClient(secret, base_addresses={"api": config["STRIPE_API_BASE"]},
                               max_network_retries=2)


@contextlib.contextmanager
def calling_stripe():
    """Stripe's errors as Lunos errors: a bad request stays a 400, the rest are upstream failures."""
    try:
        yield
    except stripe.InvalidRequestError as exc:
        raise InvalidRequest(f"Stripe refused the request: {exc.user_message or exc}") from None
    except stripe.StripeError as exc:
        raise UpstreamFailed(f"Stripe failed: {exc.user_message or exc.__class__.__name__}") from None
