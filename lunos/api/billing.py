"""Billing through Stripe: top-ups, subscriptions, the portal, the subscription, webhooks."""

from flask import Blueprint, current_app, g, jsonify, request

from lunos import return_urls
from lunos.api.auth import require_management
from lunos.api.body import json_object
from lunos.billing import checkout, webhooks
from lunos.errors import InvalidRequest
from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account
from lunos.services.keys import as_utc

bp = Blueprint("billing", __name__, url_prefix="/v1/billing")


def _return_url(body):
    """The request's return_url if Stripe may send users there (lunos/return_urls.py), else a 400;
    LUNOS_BILLING_RETURN_URL when the request names none."""
    url = body.get("return_url")
    if url is None:
        return current_app.config["BILLING_RETURN_URL"]
    if not isinstance(url, str):
        raise InvalidRequest("return_url must be a string: an http:// or https:// URL", param="return_url")
    try:
        return return_urls.from_config(current_app.config).check(url)
    except ValueError as refused:
        raise InvalidRequest(f"return_url {refused}", param="return_url") from None


@bp.post("/checkout")
@require_management("Billing")
def start_checkout():
    body = json_object()
    return jsonify(
        checkout.start_topup(current_app.config, g.caller.account_id, body.get("amount_usd"), _return_url(body))
    )


@bp.post("/subscribe")
@require_management("Billing")
def subscribe():
    body = json_object()
    return jsonify(
        checkout.start_subscription(
            current_app.config, current_gateway().plans, g.caller.account_id, body.get("plan"), _return_url(body)
        )
    )


@bp.post("/portal")
@require_management("Billing")
def portal():
    body = json_object() if request.get_data(cache=True).strip() else {}
    return jsonify(checkout.start_portal(current_app.config, g.caller.account_id, _return_url(body)))


@bp.get("/subscription")
@require_management("Billing")
def subscription():
    account = db.session.get(Account, g.caller.account_id)
    plans = current_gateway().plans
    return jsonify(
        {
            "plan": account.plan or plans.default,
            "effective_plan": g.caller.plan.name,
            "status": account.subscription_status,
            "subscription_id": account.stripe_subscription_id,
            "past_due_since": as_utc(account.past_due_since).isoformat() if account.past_due_since else None,
            "restricted": g.caller.plan.name != (account.plan or plans.default),
        }
    )


@bp.post("/webhooks")
def stripe_webhook():
    event = webhooks.verify(
        request.get_data(), request.headers.get("Stripe-Signature"), current_app.config["STRIPE_WEBHOOK_SECRET"]
    )
    outcome = webhooks.process(event, current_gateway().plans, current_app.config)
    return jsonify({"received": True, "outcome": outcome})
