"""The operator's API under /admin, authorised by LUNOS_ADMIN_TOKEN: accounts, credits, plans,
and the billing events that need the operator's attention."""

import functools
import hmac
import uuid

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from lunos.api.body import json_object
from lunos.billing import store as billing_store
from lunos.errors import AuthenticationFailed, InvalidRequest, NotFound
from lunos.extensions import db
from lunos.gateway import current_gateway
from lunos.models import Account, LedgerEntry
from lunos.money import usd, usd_to_micros
from lunos.schemas import is_row_id, text
from lunos.services import accounts, keys, throttle

# A ledger row's source_ref is 255 characters: "admin:<account id>:<reference>" must fit.
MAX_REFERENCE_CHARS = 200
MAX_REASON_CHARS = 500

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_only(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = current_app.config["ADMIN_TOKEN"]
        if not token:
            raise NotFound("The requested URL was not found on the server.")  # no admin API configured
        address = request.remote_addr or "unknown"
        throttle.ADMIN_TOKEN.check(address)  # 429 after too many failures, even for the right token
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            throttle.ADMIN_TOKEN.failed(address)
            raise AuthenticationFailed("Invalid admin token.")
        return view(*args, **kwargs)

    return wrapper


def _account(account_id):
    account = db.session.get(Account, account_id) if is_row_id(account_id) else None
    if account is None:
        raise NotFound(f"No account with id {account_id}.", param="id")
    return account


def describe(account):
    return {
        "id": account.id,
        "name": account.name,
        "balance": usd(account.balance_micros),
        "reserved": usd(account.reserved_micros),
        "plan": account.plan or current_gateway().plans.default,
        "subscription_status": account.subscription_status,
        "stripe_customer_id": account.stripe_customer_id,
        "suspended": account.suspended,
        "flagged": account.flagged,
        "flag_reason": account.flag_reason,
        "created_at": keys.as_utc(account.created_at).isoformat(),
    }


@bp.post("/accounts")
@admin_only
def create_account():
    body = json_object()
    name = text(body.get("name"), "name", max_length=100)
    credits = usd_to_micros(body.get("credits_usd", 0), param="credits_usd")
    if credits < 0:
        raise InvalidRequest("credits_usd must not be negative", param="credits_usd")
    account = accounts.create_account(name, credits)
    response = jsonify(describe(account))
    response.status_code = 201
    return response


@bp.get("/accounts")
@admin_only
def list_accounts():
    rows = db.session.scalars(select(Account).order_by(Account.id)).all()
    return jsonify({"object": "list", "data": [describe(a) for a in rows]})


@bp.get("/accounts/<int:account_id>")
@admin_only
def get_account(account_id):
    return jsonify(describe(_account(account_id)))


def _suspend(account_id, suspended):
    account = _account(account_id)
    account.suspended = suspended
    db.session.commit()
    keys.key_cache().clear()  # this worker refuses at once; the others within LUNOS_KEY_CACHE_S
    return jsonify(describe(account))


@bp.post("/accounts/<int:account_id>/suspend")
@admin_only
def suspend(account_id):
    return _suspend(account_id, True)


@bp.post("/accounts/<int:account_id>/unsuspend")
@admin_only
def unsuspend(account_id):
    return _suspend(account_id, False)


@bp.post("/accounts/<int:account_id>/credits")
@admin_only
def adjust_credits(account_id):
    """An adjustment; a retried call with the same ``reference`` applies once."""
    body = json_object()
    account = _account(account_id)
    amount = usd_to_micros(body.get("usd"), param="usd")
    reason = text(body.get("reason"), "reason", max_length=MAX_REASON_CHARS)
    reference = body.get("reference") or None
    if isinstance(reference, int) and not isinstance(reference, bool):
        reference = str(reference)  # a ticket number
    reference = text(reference, "reference", max_length=MAX_REFERENCE_CHARS, required=False)
    source_ref = f"admin:{account.id}:{reference or uuid.uuid4().hex}"
    if db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.source_ref == source_ref)) is not None:
        return jsonify({**describe(account), "applied": False})  # a retry of an applied adjustment
    accounts.grant(account, amount, reason, source_ref=source_ref)
    return jsonify({**describe(account), "applied": True})


@bp.put("/accounts/<int:account_id>/plan")
@admin_only
def assign_plan(account_id):
    plan = json_object().get("plan")
    if not isinstance(plan, str) or plan not in current_gateway().plans.plans:
        raise InvalidRequest(f"No plan named {plan!r}.", param="plan")
    account = _account(account_id)
    account.plan = plan
    db.session.commit()
    keys.key_cache().clear()
    return jsonify(describe(account))


@bp.get("/billing/attention")
@admin_only
def billing_attention():
    """What Stripe sent that Lunos did not turn into credits by itself, newest first."""
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("limit must be a whole number from 1 to 1000", param="limit")
    return jsonify({"object": "list", "data": billing_store.notices(int(raw))})
