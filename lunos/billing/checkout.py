"""Checkout Sessions for credit top-ups and subscriptions, Customer Portal sessions.

What a call needs of the account is read first; every Stripe call then runs with the session's
transaction ended (``calling_stripe``), and what Stripe answered is written in a new one.
"""

from collections.abc import Mapping

import stripe
from sqlalchemy import update

from lunos.billing.stripe_api import calling_stripe, client
from lunos.errors import InvalidRequest, NotFound
from lunos.extensions import db
from lunos.models import Account
from lunos.money import cents_to_micros, usd, usd_to_cents
from lunos.plans import Plans

PURPOSE_CREDITS = "credits"
# A subscription in these states is over: the account may subscribe again.
SUBSCRIPTION_ENDED = frozenset({"canceled", "incomplete_expired"})


class SubscriptionExists(InvalidRequest):
    """The account has a live subscription: plan changes go through the Customer Portal."""

    status = 409
    code = "subscription_exists"


def _metadata(account_id: int, purpose: str) -> dict:
    return {"lunos_account_id": str(account_id), "lunos_purpose": purpose}


def _customer(stripe_client: stripe.StripeClient, account_id: int) -> str:
    """The account's Stripe customer, created once (the idempotency key makes a retry or a
    concurrent request get the same customer)."""
    account = db.session.get(Account, account_id)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    name = account.name
    with calling_stripe():
        customer = stripe_client.v1.customers.create(
            params={"name": name, "metadata": {"lunos_account_id": str(account_id)}},
            options={"idempotency_key": f"lunos-customer-{account_id}"},
        )
    db.session.execute(
        update(Account)
        .where(Account.id == account_id, Account.stripe_customer_id.is_(None))
        .values(stripe_customer_id=customer.id)
    )
    db.session.commit()
    return customer.id


def topup_cents(amount_usd: object, minimum_usd: float, maximum_usd: float) -> int:
    cents = usd_to_cents(amount_usd, param="amount_usd")
    if not usd_to_cents(minimum_usd) <= cents <= usd_to_cents(maximum_usd):
        raise InvalidRequest(f"amount_usd must be between {minimum_usd:g} and {maximum_usd:g}", param="amount_usd")
    return cents


def _checkout_session(config: Mapping, account_id: int, return_url: str, params: dict) -> stripe.StripeObject:
    """A Checkout Session for the account's customer (created first if need be)."""
    stripe_client = client(config)
    customer = _customer(stripe_client, account_id)
    with calling_stripe():
        return stripe_client.v1.checkout.sessions.create(
            params={
                "customer": customer,
                "client_reference_id": str(account_id),
                "success_url": return_url,
                "cancel_url": return_url,
                **params,
            }
        )


def start_topup(config: Mapping, account_id: int, amount_usd: object, return_url: str) -> dict:
    cents = topup_cents(amount_usd, config["TOPUP_MIN_USD"], config["TOPUP_MAX_USD"])
    session = _checkout_session(
        config,
        account_id,
        return_url,
        {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {"currency": "usd", "unit_amount": cents, "product_data": {"name": "Lunos credits"}},
                }
            ],
            "metadata": _metadata(account_id, PURPOSE_CREDITS),
            "payment_intent_data": {"metadata": _metadata(account_id, PURPOSE_CREDITS)},
        },
    )
    return {"id": session.id, "url": session.url, "amount_usd": usd(cents_to_micros(cents))}


def refuse_second_subscription(account: Account) -> None:
    """One subscription per account: while one is live, plan changes go through the portal."""
    if account.stripe_subscription_id and account.subscription_status not in SUBSCRIPTION_ENDED:
        raise SubscriptionExists(
            f"This account already has a subscription ({account.stripe_subscription_id}, "
            f"{account.subscription_status or 'being set up'}): change or cancel its plan in the Stripe "
            "Customer Portal (POST /v1/billing/portal) instead of subscribing again."
        )


def start_subscription(config: Mapping, plans: Plans, account_id: int, plan_name: object, return_url: str) -> dict:
    plan = plans.plans.get(plan_name or "") if isinstance(plan_name, str) or plan_name is None else None
    if plan is None:
        raise InvalidRequest(f"No plan named {plan_name!r}; plans: {', '.join(plans.plans)}", param="plan")
    if not plan.stripe_price_id:
        raise InvalidRequest(f"The '{plan.name}' plan is not for sale (it has no Stripe price).", param="plan")
    refuse_second_subscription(db.session.get(Account, account_id))
    session = _checkout_session(
        config,
        account_id,
        return_url,
        {
            "mode": "subscription",
            "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
            "metadata": _metadata(account_id, "subscription"),
            "subscription_data": {"metadata": {**_metadata(account_id, "subscription"), "lunos_plan": plan.name}},
        },
    )
    return {"id": session.id, "url": session.url, "plan": plan.name}


def start_portal(config: Mapping, account_id: int, return_url: str) -> dict:
    customer = db.session.get(Account, account_id).stripe_customer_id
    if not customer:
        raise NotFound("This account has no billing history yet: buy credits or subscribe first.")
    with calling_stripe():
        session = client(config).v1.billing_portal.sessions.create(
            params={"customer": customer, "return_url": return_url}
        )
    return {"id": session.id, "url": session.url}
