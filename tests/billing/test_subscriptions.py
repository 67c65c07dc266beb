"""The subscription lifecycle: state synced from Stripe itself, one subscription per account,
and the credits each paid invoice grants."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from lunos.extensions import db
from lunos.models import Account
from lunos.plans import PlansError, load_plans
from tests.billing.conftest import TRIAL_PLANS
from tests.billing.stripe_events import balance, deliver, event, invoice, invoice_payment, signed
from tests.conftest import set_plan

USD = 1_000_000  # micro-USD
SUBSCRIPTION = "/v1/subscriptions/sub_1"


def account_row(app, account):
    with app.app_context():
        row = db.session.get(Account, account)
        db.session.expunge(row)
        return row


def view(client, manager):
    return client.get("/v1/billing/subscription", headers=manager).get_json()


def changed(client, stripe_fake, kind="customer.subscription.updated", subscription_id="sub_1", **payload):
    """An event about the subscription; its payload is what Lunos must not trust."""
    obj = {**stripe_fake.subscriptions.get(subscription_id, {"id": subscription_id, "customer": "cus_A"}), **payload}
    response = deliver(client, event(kind, obj))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["outcome"]


def test_state_comes_from_stripe_not_from_the_payload(
    billing_app, billing_client, manager, account, customer, stripe_fake
):
    stripe_fake.subscribe("sub_1", price="price_pro")
    # The payload says basic (an older event, or the same second): Stripe says pro.
    changed(billing_client, stripe_fake, status="active", items={"data": [{"price": {"id": "price_basic"}}]})
    assert view(billing_client, manager) == {
        "plan": "pro",
        "effective_plan": "pro",
        "status": "active",
        "subscription_id": "sub_1",
        "past_due_since": None,
        "restricted": False,
    }
    [fetch] = stripe_fake.calls_to(SUBSCRIPTION)
    assert fetch.method == "GET" and fetch.headers["Authorization"] == "Bearer sk_test_lunos"


def test_deleted_falls_back_to_the_default_plan_and_late_events_do_not_revive_it(
    billing_app, billing_client, manager, account, customer, stripe_fake
):
    stripe_fake.subscribe("sub_1", price="price_basic")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    assert view(billing_client, manager)["plan"] == "basic"
    stripe_fake.subscribe("sub_1", price="price_basic", status="canceled")
    changed(billing_client, stripe_fake, "customer.subscription.deleted")
    # An update from before the deletion arrives late, claiming to be active.
    changed(billing_client, stripe_fake, status="active")
    row = account_row(billing_app, account)
    assert (row.plan, row.subscription_status, row.stripe_subscription_id) == (None, "canceled", None)
    assert view(billing_client, manager)["effective_plan"] == "free"


@pytest.mark.parametrize("status", ["incomplete", "incomplete_expired", "unpaid", "paused", "canceled"])
def test_only_paid_states_put_the_plan_in_force(
    billing_app, billing_client, manager, account, customer, stripe_fake, status
):
    stripe_fake.subscribe("sub_1", price="price_pro", status=status)
    changed(billing_client, stripe_fake, "customer.subscription.created")
    assert view(billing_client, manager)["effective_plan"] == "free", status


@pytest.mark.parametrize("status", ["active", "trialing", "past_due"])
def test_active_trialing_and_fresh_past_due_have_the_plan(
    billing_app, billing_client, manager, account, customer, stripe_fake, status
):
    stripe_fake.subscribe("sub_1", price="price_pro", status=status)
    changed(billing_client, stripe_fake, "customer.subscription.created")
    assert view(billing_client, manager)["effective_plan"] == "pro", status


def test_incomplete_gets_the_plan_once_paid(billing_app, billing_client, manager, account, customer, stripe_fake):
    stripe_fake.subscribe("sub_1", status="incomplete")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    seen = view(billing_client, manager)
    assert (seen["status"], seen["effective_plan"]) == ("incomplete", "free")
    stripe_fake.subscribe("sub_1", status="active")
    stripe_fake.invoice_payments["in_1"] = [invoice_payment("in_1", "pi_1", 5000)]
    deliver(billing_client, event("invoice.paid", invoice("in_1", reason="subscription_create")))
    seen = view(billing_client, manager)
    assert (seen["status"], seen["effective_plan"]) == ("active", "pro")


def test_paused_and_resumed(billing_app, billing_client, manager, account, customer, stripe_fake):
    stripe_fake.subscribe("sub_1")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    stripe_fake.subscribe("sub_1", status="paused")
    changed(billing_client, stripe_fake, "customer.subscription.paused")
    paused = view(billing_client, manager)
    assert (paused["status"], paused["effective_plan"], paused["restricted"]) == ("paused", "free", True)
    stripe_fake.subscribe("sub_1", status="active")
    changed(billing_client, stripe_fake, "customer.subscription.resumed")
    resumed = view(billing_client, manager)
    assert (resumed["status"], resumed["effective_plan"], resumed["restricted"]) == ("active", "pro", False)


def test_payment_failure_goes_past_due_then_restricted(
    billing_app, billing_client, account, customer, manager, stripe_fake
):
    stripe_fake.subscribe("sub_1")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    stripe_fake.subscribe("sub_1", status="past_due")
    deliver(billing_client, event("invoice.payment_failed", invoice("in_9")))
    seen = view(billing_client, manager)
    assert (seen["status"], seen["restricted"], seen["effective_plan"]) == ("past_due", False, "pro")
    assert datetime.fromisoformat(seen["past_due_since"]).utcoffset() == timedelta(0), "a time says it is UTC"
    set_plan(billing_app, account, "pro", past_due_since=datetime.now(UTC) - timedelta(days=10))
    seen = view(billing_client, manager)
    assert (seen["restricted"], seen["effective_plan"]) == (True, "free")
    stripe_fake.subscribe("sub_1", status="active")
    changed(billing_client, stripe_fake)
    seen = view(billing_client, manager)
    assert (seen["status"], seen["past_due_since"], seen["restricted"]) == ("active", None, False)


def test_checkout_session_adopts_its_subscription(billing_app, billing_client, manager, account, customer, stripe_fake):
    stripe_fake.subscribe("sub_1", price="price_basic", metadata={"lunos_account_id": str(account)})
    session = {
        "id": "cs_sub",
        "object": "checkout.session",
        "mode": "subscription",
        "customer": "cus_A",
        "subscription": "sub_1",
        "client_reference_id": str(account),
        "metadata": {},
    }
    assert deliver(billing_client, event("checkout.session.completed", session)).get_json()["outcome"] == "processed"
    seen = view(billing_client, manager)
    assert (seen["subscription_id"], seen["plan"]) == ("sub_1", "basic")


def test_a_subscription_not_the_accounts_current_one_changes_nothing(
    billing_app, billing_client, manager, account, customer, stripe_fake, attention
):
    stripe_fake.subscribe("sub_1", price="price_basic")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    start = balance(billing_app, account)
    # A second subscription of the same customer (made in Stripe's dashboard, or a race).
    stripe_fake.subscribe("sub_2", price="price_pro")
    assert changed(billing_client, stripe_fake, "customer.subscription.created", "sub_2") == "ignored"
    stripe_fake.invoice_payments["in_2"] = [invoice_payment("in_2", "pi_2", 5000)]
    deliver(billing_client, event("invoice.paid", invoice("in_2", reason="subscription_create", subscription="sub_2")))
    stripe_fake.subscribe("sub_2", price="price_pro", status="canceled")
    assert changed(billing_client, stripe_fake, "customer.subscription.deleted", "sub_2") == "ignored"
    seen = view(billing_client, manager)
    assert (seen["subscription_id"], seen["plan"], seen["status"]) == ("sub_1", "basic", "active")
    assert balance(billing_app, account) == start, "no credits for a subscription that is not the account's"
    [notice] = attention()
    assert notice["kind"] == "second_subscription" and notice["stripe_object"] == "sub_2"
    assert notice["account_id"] == account


def test_subscribe_while_subscribed_is_409_pointing_to_the_portal(
    billing_app, billing_client, manager, account, customer, stripe_fake
):
    stripe_fake.subscribe("sub_1")
    changed(billing_client, stripe_fake, "customer.subscription.created")
    stripe_fake.calls.clear()
    response = billing_client.post("/v1/billing/subscribe", headers=manager, json={"plan": "basic"})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "subscription_exists")
    assert "/v1/billing/portal" in error["message"]
    assert not stripe_fake.calls, "no second Checkout Session"
    stripe_fake.subscribe("sub_1", status="canceled")
    changed(billing_client, stripe_fake, "customer.subscription.deleted")
    assert billing_client.post("/v1/billing/subscribe", headers=manager, json={"plan": "basic"}).status_code == 200


def test_invoice_grants_the_subscriptions_plan_once_per_invoice(
    billing_app, billing_client, account, customer, stripe_fake
):
    stripe_fake.subscribe("sub_1", price="price_pro")
    stripe_fake.invoice_payments["in_1"] = [invoice_payment("in_1", "pi_1", 5000)]
    start = balance(billing_app, account)
    first = event("invoice.paid", invoice("in_1", reason="subscription_create", price="price_basic"))
    deliver(billing_client, first)
    assert deliver(billing_client, first).get_json()["outcome"] == "duplicate"
    deliver(billing_client, event("invoice.paid", invoice("in_1", reason="subscription_create")))  # another event
    assert balance(billing_app, account) - start == 50 * USD, "the pro plan's $50 (not the line's basic), once"
    [asked] = stripe_fake.calls_to("/v1/invoice_payments")
    assert asked.query == {"invoice": "in_1", "status": "paid", "limit": "100"}
    stripe_fake.invoice_payments["in_2"] = [invoice_payment("in_2", "pi_2", 5000)]
    deliver(billing_client, event("invoice.paid", invoice("in_2", reason="subscription_cycle")))
    assert balance(billing_app, account) - start == 100 * USD, "the next period"
    deliver(billing_client, event("invoice.paid", invoice("in_3", reason="manual")))
    assert balance(billing_app, account) - start == 100 * USD, "an invoice for no period grants nothing"


@pytest.mark.parametrize("synced_first", [False, True])
def test_upgrade_grants_the_difference_once_and_a_downgrade_nothing(
    billing_app, billing_client, account, customer, stripe_fake, synced_first
):
    stripe_fake.subscribe("sub_1", price="price_basic")
    stripe_fake.invoice_payments["in_1"] = [invoice_payment("in_1", "pi_1", 1000)]
    deliver(billing_client, event("invoice.paid", invoice("in_1", reason="subscription_create", paid=1000)))
    start = balance(billing_app, account)
    stripe_fake.subscribe("sub_1", price="price_pro")  # upgraded in the portal, mid-period
    if synced_first:  # the subscription's update arrives before the proration invoice
        changed(billing_client, stripe_fake)
    stripe_fake.invoice_payments["in_2"] = [invoice_payment("in_2", "pi_2", 2000)]
    proration = invoice("in_2", reason="subscription_update", paid=2000, price="price_basic")
    deliver(billing_client, event("invoice.paid", proration))
    deliver(billing_client, event("invoice.paid", proration))
    assert balance(billing_app, account) - start == 40 * USD, "pro's $50 less basic's $10 granted for this period"
    stripe_fake.subscribe("sub_1", price="price_basic")  # downgraded
    deliver(billing_client, event("invoice.paid", invoice("in_3", reason="subscription_update", paid=0, total=-500)))
    stripe_fake.subscribe("sub_1", price="price_pro")  # and up again, in the same period
    stripe_fake.invoice_payments["in_4"] = [invoice_payment("in_4", "pi_4", 700)]
    deliver(billing_client, event("invoice.paid", invoice("in_4", reason="subscription_update", paid=700)))
    assert balance(billing_app, account) - start == 40 * USD, "this period was granted pro's credits already"
    stripe_fake.invoice_payments["in_5"] = [invoice_payment("in_5", "pi_5", 5000)]
    deliver(billing_client, event("invoice.paid", invoice("in_5", reason="subscription_cycle")))
    assert balance(billing_app, account) - start == 90 * USD, "the next period: pro's $50"


def test_zero_invoice_grants_trial_credits_not_the_monthly_ones(
    make_app, stripe_settings, stripe_fake, account, tmp_path
):
    plans = tmp_path / "plans.toml"
    plans.write_text(TRIAL_PLANS)
    app = make_app(PLANS=str(plans), **stripe_settings)
    client = app.test_client()
    set_plan(app, account, None, stripe_customer_id="cus_A")
    stripe_fake.reset()
    stripe_fake.subscribe("sub_1", status="trialing")
    start = balance(app, account)
    deliver(client, event("invoice.paid", invoice("in_trial", reason="subscription_create", paid=0)))
    assert balance(app, account) - start == 2_500_000, "pro's trial_credits_usd"
    assert not stripe_fake.calls_to("/v1/invoice_payments"), "nothing was paid"
    stripe_fake.subscribe("sub_1", status="active")
    stripe_fake.invoice_payments["in_2"] = [invoice_payment("in_2", "pi_2", 5000)]
    deliver(client, event("invoice.paid", invoice("in_2", reason="subscription_cycle")))
    assert balance(app, account) - start == 52_500_000, "the trial ended: a paid period"


def test_zero_invoice_grants_nothing_by_default(billing_app, billing_client, account, customer, stripe_fake):
    stripe_fake.subscribe("sub_1", status="trialing")
    start = balance(billing_app, account)
    deliver(billing_client, event("invoice.paid", invoice("in_trial", reason="subscription_create", paid=0)))
    assert balance(billing_app, account) == start


def test_trial_credits_are_an_optional_plan_field(tmp_path):
    plans = tmp_path / "plans.toml"
    plans.write_text(TRIAL_PLANS)
    loaded = load_plans(plans)
    assert (loaded.get("pro").trial_credits_micros, loaded.get("basic").trial_credits_micros) == (2_500_000, 0)
    plans.write_text(TRIAL_PLANS.replace("trial_credits_usd = 2.5", "trial_credits_usd = -1"))
    with pytest.raises(PlansError, match="trial_credits_usd"):
        load_plans(plans)


def test_invoice_in_another_currency_grants_nothing_and_is_listed(
    billing_app, billing_client, account, customer, stripe_fake, attention
):
    stripe_fake.subscribe("sub_1")
    start = balance(billing_app, account)
    deliver(billing_client, event("invoice.paid", invoice("in_eur", reason="subscription_create", currency="eur")))
    assert balance(billing_app, account) == start
    assert account_row(billing_app, account).plan == "pro", "the subscription still syncs"
    [notice] = attention()
    assert (notice["kind"], notice["stripe_object"], notice["account_id"]) == ("currency", "in_eur", account)
    assert "EUR" in notice["message"]


def test_an_older_fetch_never_overwrites_a_newer_one(billing_app, billing_server, account, customer, stripe_fake):
    """Delivery A fetches first but its answer (basic) arrives after delivery B fetched pro and
    committed: A's sync sees the counter moved, fetches again, and pro stays."""
    stripe_fake.subscribe("sub_1", price="price_basic")
    stripe_fake.hold(SUBSCRIPTION)
    answers = {}

    def post(name):
        body, headers = signed(event("customer.subscription.updated", stripe_fake.subscriptions["sub_1"]))
        answers[name] = requests.post(f"{billing_server}/v1/billing/webhooks", data=body, headers=headers, timeout=30)

    older = threading.Thread(target=post, args=("older",))
    older.start()
    assert stripe_fake.wait_for(SUBSCRIPTION, 1)
    stripe_fake.subscribe("sub_1", price="price_pro")  # the customer upgrades meanwhile
    post("newer")
    assert account_row(billing_app, account).plan == "pro"
    stripe_fake.release(SUBSCRIPTION)
    older.join(30)
    assert answers["older"].status_code == answers["newer"].status_code == 200
    assert account_row(billing_app, account).plan == "pro"
    assert len(stripe_fake.calls_to(SUBSCRIPTION)) == 3, "the older delivery fetched again"


def test_same_second_events_cannot_matter(billing_app, billing_client, account, customer, stripe_fake):
    second = int(time.time())
    stripe_fake.subscribe("sub_1", price="price_pro")
    for price in ("price_pro", "price_basic"):  # same `created`, payloads disagreeing
        payload = {**stripe_fake.subscriptions["sub_1"], "items": {"data": [{"price": {"id": price}}]}}
        deliver(billing_client, event("customer.subscription.updated", payload, created=second))
    assert account_row(billing_app, account).plan == "pro"
