"""Billing through Stripe: top-ups, subscriptions, the portal, the subscription, webhooks."""
from flask import Blueprint, current_app, g, jsonify, request

from lunos.api.auth import require_management
from lunos.api.body import json_body
from lunos.billing import checkout, webhooks
from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account

bp = Blueprint("billing", __name__, url_prefix="/v1/billing")


def _return_url(body):
    url = body.get("return_url") if isinstance(body, dict) else None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) \
        else current_app.config["BILLING_RETURN_URL"]


@bp.post("/checkout")
@require_management("Billing")
def start_checkout():
    body = json_body()
    return jsonify(checkout.start_topup(current_app.config, g.caller.account_id, body.get("amount_usd"),
                                        _return_url(body)))


@bp.post("/subscribe")
@require_management("Billing")
def subscribe():
    body = json_body()
    return jsonify(checkout.start_subscription(current_app.config, current_gateway().plans, g.caller.account_id,
                                               body.get("plan"), _return_url(body)))


@bp.post("/portal")
@require_management("Billing")
def portal():
    body = request.get_json(force=True, silent=True) or {}
    return jsonify(checkout.start_portal(current_app.config, g.caller.account_id, _return_url(body)))


@bp.get("/subscription")
@require_management("Billing")
def subscription():
    account = db.session.get(Account, g.caller.account_id)
    plans = current_gateway().plans
    return jsonify({"plan": account.plan or plans.default, "effective_plan": g.caller.plan.name,
                    "status": account.subscription_status, "subscription_id": account.stripe_subscription_id,
                    "past_due_since": account.past_due_since.isoformat() if account.past_due_since else None,
                    "restricted": g.caller.plan.name != (account.plan or plans.default)})


@bp.post("/webhooks")
def stripe_webhook():
    event = webhooks.verify(request.get_data(), request.headers.get("Stripe-Signature"),
                            current_app.config["STRIPE_WEBHOOK_SECRET"])
    outcome = webhooks.process(event, current_gateway().plans, current_app.config)
    return jsonify({"received": True, "outcome": outcome})
