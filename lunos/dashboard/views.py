"""Dashboard pages: overview, apps, models, keys, billing. Thin: the services do the work."""

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from lunos.billing import checkout
from lunos.dashboard.charts import bar_chart
from lunos.dashboard.session import check_csrf, csrf_token, sign_in, sign_out, signed_in
from lunos.errors import LunosError
from lunos.gateway import current_gateway
from lunos.models.api_key import INFERENCE, MANAGEMENT
from lunos.services import accounts, analytics, keys, throttle

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static")


# The pages load only their own stylesheet and run no script; forms post here, and the billing
# forms' redirects go on to Stripe's Checkout and Portal.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self' https://checkout.stripe.com https://billing.stripe.com; "
    "frame-ancestors 'none'"
)


@bp.app_context_processor
def _template_globals():
    return {"csrf_token": csrf_token}


@bp.after_request
def _security_headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"  # pages show balances, and a new key's secret once
    return response


def _window(days):
    end = datetime.now(UTC)
    return analytics.UsageFilter(g.account.id, end - timedelta(days=days), end + timedelta(seconds=1))


def _days():
    return 30 if request.args.get("days") == "30" else 14


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        check_csrf()
        address = request.remote_addr or "unknown"
        try:
            throttle.DASHBOARD_SIGN_IN.check(address)  # even the right key waits once locked
        except LunosError as locked:  # RateLimited, or ServiceUnavailable when it cannot count
            return render_template("login.html", error=locked.message), locked.status, locked.headers
        try:
            error = sign_in(request.form.get("key", ""))
        except LunosError as refused:
            error = refused.message
        if error is None:
            return redirect(url_for("dashboard.overview"))
        throttle.DASHBOARD_SIGN_IN.failed(address)
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
@signed_in
def logout():
    sign_out()
    return redirect(url_for("dashboard.login"))


@bp.get("/")
@signed_in
def overview():
    now = datetime.now(UTC)
    month = analytics.UsageFilter(g.account.id, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now)
    days = analytics.aggregate(month, "day")
    summary = accounts.balance_summary(g.account.id, current_app.config["LOW_BALANCE_USD"])
    totals = {
        "requests": sum(d["requests"] for d in days),
        "errors": sum(d["errors"] for d in days),
        "cost": sum(d["cost"] for d in days),
    }
    chart = bar_chart([(d["day"], d["requests"]) for d in days], "Requests per day this month")
    return render_template(
        "overview.html",
        summary=summary,
        totals=totals,
        chart=chart,
        plan=g.account.plan or current_gateway().plans.default,
    )


@bp.get("/apps")
@signed_in
def apps():
    days = _days()
    rows = analytics.aggregate(_window(days), "app,day")
    names = {a["app_id"]: a["name"] for a in analytics.apps(g.account.id)}
    per_app = {}
    for row in rows:
        per_app.setdefault(row["app"], []).append(row)
    today = datetime.now(UTC).date()
    calendar = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    empty = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    panels = []
    for app_id, app_rows in sorted(per_app.items(), key=lambda item: -sum(r["requests"] for r in item[1])):
        by_day = {r["day"]: r for r in app_rows}
        points = [(day, by_day.get(day, empty)) for day in calendar]  # every day, quiet ones too
        panels.append(
            {
                "app_id": app_id,
                "name": names.get(app_id),
                "rows": app_rows,
                "requests": sum(r["requests"] for r in app_rows),
                "errors": sum(r["errors"] for r in app_rows),
                "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in app_rows),
                "cost": sum(r["cost"] for r in app_rows),
                "charts": [
                    bar_chart([(d, r["requests"]) for d, r in points], "Requests"),
                    bar_chart([(d, r["prompt_tokens"] + r["completion_tokens"]) for d, r in points], "Tokens"),
                    bar_chart([(d, r["cost"]) for d, r in points], "Cost (USD)"),
                ],
            }
        )
    return render_template("apps.html", panels=panels, days=days)


@bp.get("/models")
@signed_in
def models():
    usage = {row["group"]: row for row in analytics.aggregate(_window(30), "model")}
    catalog = current_gateway().catalog.models.values()
    return render_template("models.html", catalog=catalog, usage=usage)


@bp.route("/keys", methods=["GET", "POST"])
@signed_in
def keys_page():
    created = None
    if request.method == "POST":
        kind = MANAGEMENT if request.form.get("kind") == MANAGEMENT else INFERENCE
        name = (request.form.get("name") or "").replace("\x00", "").strip()[:100] or "default"  # no NUL in PostgreSQL
        _key, created = keys.create_key(g.account, current_app.config["SECRET_KEY"], name=name, kind=kind)
    return render_template("keys.html", keys=keys.list_keys(g.account.id), created=created)


@bp.post("/keys/<int:key_id>/revoke")
@signed_in
def revoke(key_id):
    keys.revoke_key(keys.get_key(g.account.id, key_id))
    flash("Key revoked.")
    return redirect(url_for("dashboard.keys_page"))


@bp.get("/billing")
@signed_in
def billing():
    plans = current_gateway().plans
    summary = accounts.balance_summary(g.account.id, current_app.config["LOW_BALANCE_USD"])
    return render_template(
        "billing.html",
        summary=summary,
        plans=plans.plans.values(),
        account=g.account,
        plan=g.account.plan or plans.default,
        configured=bool(current_app.config["STRIPE_SECRET_KEY"]),
    )


def _public_url_for(endpoint: str) -> str:
    """A page's absolute URL on LUNOS_PUBLIC_URL: never built from the request's Host header,
    which the client chooses (and which would have Stripe send the user to that host)."""
    path = url_for(endpoint)[len(request.script_root) :]
    return current_app.config["PUBLIC_URL"].rstrip("/") + path


@bp.post("/billing/<action>")
@signed_in
def billing_action(action):
    """Buy credits, subscribe or open the portal: each sends the browser on to Stripe."""
    config = current_app.config
    back = _public_url_for("dashboard.billing")
    try:
        if action == "checkout":
            session_ = checkout.start_topup(config, g.account.id, request.form.get("amount_usd"), back)
        elif action == "subscribe":
            session_ = checkout.start_subscription(
                config, current_gateway().plans, g.account.id, request.form.get("plan"), back
            )
        elif action == "portal":
            session_ = checkout.start_portal(config, g.account.id, back)
        else:
            return redirect(url_for("dashboard.billing"))
    except LunosError as error:
        flash(error.message)
        return redirect(url_for("dashboard.billing"))
    return redirect(session_["url"], code=303)
