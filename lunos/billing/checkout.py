"""Checkout Sessions for credit top-ups and subscriptions, Customer Portal sessions."""
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from lunos.billing.stripe_api import calling_stripe, client
from lunos.errors import InvalidRequest, NotFound
from lunos.extensions import db
from lunos.models import Account

PURPOSE_CREDITS = "credits"


def _metadata(account, purpose):
    return {"lunos_account_id": str(account.id), "lunos_purpose": purpose}


def ensure_customer(stripe_client, account):
    """The account's Stripe customer, created once (the idempotency key makes a retry or a
    concurrent request get the same customer)."""
    if account.stripe_customer_id:
        return account.stripe_customer_id
    with calling_stripe():
        customer = stripe_client.v1.customers.create(
            params={"name": account.name, "metadata": {"lunos_account_id": str(account.id)}},
            options={"idempotency_key": f"lunos-customer-{account.id}"})
    account.stripe_customer_id = customer.id
    db.session.commit()
    return customer.id


def topup_cents(amount_usd, minimum_usd, maximum_usd):
    try:
        amount = Decimal(str(amount_usd))
    except (InvalidOperation, ValueError):
        raise InvalidRequest("amount_usd must be a number of US dollars", param="amount_usd") from None
    if not amount.is_finite() or amount != amount.quantize(Decimal("0.01"), rounding=ROUND_DOWN):
        raise InvalidRequest("amount_usd must be a number of US dollars with at most two decimals",
                             param="amount_usd")
    if not Decimal(str(minimum_usd)) <= amount <= Decimal(str(maximum_usd)):
        raise InvalidRequest(f"amount_usd must be between {minimum_usd:g} and {maximum_usd:g}", param="amount_usd")
    return int(amount * 100)


def _checkout_session(config, account_id, return_url, params):
    """A Checkout Session for the account's customer (created first if need be)."""
    stripe_client = client(config)
    account = db.session.get(Account, account_id)
    customer = ensure_customer(stripe_client, account)
    with calling_stripe():
        return stripe_client.v1.checkout.sessions.create(params={
            "customer": customer, "client_reference_id": str(account.id),
            "success_url": return_url, "cancel_url": return_url, **params(account)})


def start_topup(config, account_id, amount_usd, return_url):
    cents = topup_cents(amount_usd, config["TOPUP_MIN_USD"], config["TOPUP_MAX_USD"])
    session = _checkout_session(config, account_id, return_url, lambda account: {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": cents, "product_data": {"name": "Lunos credits"}}}],
        "metadata": _metadata(account, PURPOSE_CREDITS),
        "payment_intent_data": {"metadata": _metadata(account, PURPOSE_CREDITS)}})
    return {"id": session.id, "url": session.url, "amount_usd": cents / 100}


def start_subscription(config, plans, account_id, plan_name, return_url):
    plan = plans.plans.get(plan_name or "")
    if plan is None:
        raise InvalidRequest(f"No plan named {plan_name!r}; plans: {', '.join(plans.plans)}", param="plan")
    if not plan.stripe_price_id:
        raise InvalidRequest(f"The '{plan.name}' plan is not for sale (it has no Stripe price).", param="plan")
    session = _checkout_session(config, account_id, return_url, lambda account: {
        "mode": "subscription", "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
        "metadata": _metadata(account, "subscription"),
        "subscription_data": {"metadata": {**_metadata(account, "subscription"), "lunos_plan": plan.name}}})
    return {"id": session.id, "url": session.url, "plan": plan.name}


def start_portal(config, account_id, return_url):
    account = db.session.get(Account, account_id)
    if not account.stripe_customer_id:
        raise NotFound("This account has no billing history yet: buy credits or subscribe first.")
    with calling_stripe():
        session = client(config).v1.billing_portal.sessions.create(
            params={"customer": account.stripe_customer_id, "return_url": return_url})
    return {"id": session.id, "url": session.url}
