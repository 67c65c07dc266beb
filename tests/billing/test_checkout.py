"""Checkout, subscription and portal sessions, against a loopback fake of the Stripe API."""

import pytest

from tests.conftest import set_plan


def test_topup_creates_customer_once_and_a_payment_session(billing_client, manager, account, stripe_fake):
    response = billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 20})
    assert response.status_code == 200, response.get_json()
    session = response.get_json()
    assert session["url"].startswith("https://checkout.stripe.test/") and session["amount_usd"] == 20
    [customer] = stripe_fake.calls_to("/v1/customers")
    assert customer.form["metadata[lunos_account_id]"] == str(account)
    assert customer.headers["Idempotency-Key"] == f"lunos-customer-{account}"
    assert customer.headers["Authorization"] == "Bearer sk_test_lunos"
    [sent] = stripe_fake.calls_to("/v1/checkout/sessions")
    assert sent.form["mode"] == "payment"
    assert sent.form["customer"] == "cus_1"
    assert sent.form["line_items[0][price_data][unit_amount]"] == "2000"
    assert sent.form["line_items[0][price_data][currency]"] == "usd"
    assert sent.form["metadata[lunos_purpose]"] == "credits"
    assert sent.form["client_reference_id"] == str(account)
    billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": "7.50"})
    assert len(stripe_fake.calls_to("/v1/customers")) == 1, "the customer is reused"
    assert stripe_fake.calls_to("/v1/checkout/sessions")[1].form["customer"] == "cus_1"


@pytest.mark.parametrize("amount", [1, 100000, "12.345", "lots", None, -5])
def test_topup_amount_is_validated(billing_client, manager, amount, stripe_fake):
    response = billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": amount})
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "amount_usd"
    assert not stripe_fake.calls


def test_subscribe_uses_the_plan_price(billing_client, manager, account, stripe_fake):
    response = billing_client.post(
        "/v1/billing/subscribe", headers=manager, json={"plan": "pro", "return_url": "https://app.example/billing"}
    )
    assert response.status_code == 200 and response.get_json()["plan"] == "pro"
    [sent] = stripe_fake.calls_to("/v1/checkout/sessions")
    assert sent.form["mode"] == "subscription"
    assert sent.form["line_items[0][price]"] == "price_pro"
    assert sent.form["subscription_data[metadata][lunos_account_id]"] == str(account)
    assert sent.form["success_url"] == "https://app.example/billing"


@pytest.mark.parametrize("plan", ["platinum", "free", None])
def test_subscribe_refuses_unknown_or_unsold_plans(billing_client, manager, plan):
    response = billing_client.post("/v1/billing/subscribe", headers=manager, json={"plan": plan})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "plan"


def test_portal_needs_a_customer(billing_client, manager, stripe_fake):
    assert billing_client.post("/v1/billing/portal", headers=manager).status_code == 404
    billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 10})
    response = billing_client.post("/v1/billing/portal", headers=manager, json={"return_url": "https://app.example/"})
    assert response.status_code == 200 and response.get_json()["url"].startswith("https://billing.stripe.test/")
    [sent] = stripe_fake.calls_to("/v1/billing_portal/sessions")
    assert sent.form == {"customer": "cus_1", "return_url": "https://app.example/"}


def test_stripe_refusal_is_400_and_outage_is_502(billing_client, manager, stripe_fake):
    stripe_fake.fail_with = (400, "Amount too small")
    response = billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 10})
    assert response.status_code == 400 and "Amount too small" in response.get_json()["error"]["message"]
    stripe_fake.fail_with = (500, "boom")
    response = billing_client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 10})
    assert response.status_code == 502 and response.get_json()["error"]["type"] == "upstream_error"


def test_billing_not_configured_is_503(client, manager):
    response = client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 10})
    assert response.status_code == 503 and "STRIPE_SECRET_KEY" in response.get_json()["error"]["message"]


def test_subscription_view(billing_app, billing_client, manager, account):
    set_plan(billing_app, account, "pro", subscription_status="active", stripe_subscription_id="sub_1")
    view = billing_client.get("/v1/billing/subscription", headers=manager).get_json()
    assert view == {
        "plan": "pro",
        "effective_plan": "pro",
        "status": "active",
        "subscription_id": "sub_1",
        "past_due_since": None,
        "restricted": False,
    }
