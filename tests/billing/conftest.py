import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import PLANS, set_plan
from tests.stripe_fake import FakeStripe

WEBHOOK_SECRET = "whsec_test_secret"
ADMIN_TOKEN = "admin-test-token"
# The test plans, pro with trial credits.
TRIAL_PLANS = PLANS.replace('stripe_price_id = "price_pro"', 'stripe_price_id = "price_pro"\ntrial_credits_usd = 2.5')


@pytest.fixture(scope="session")
def stripe_fake():
    fake = FakeStripe()
    yield fake
    fake.close()


@pytest.fixture
def stripe_settings(stripe_fake):
    return {
        "STRIPE_SECRET_KEY": "sk_test_lunos",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": stripe_fake.url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "BILLING_RETURN_HOSTS": "app.example",
    }  # where the tests' own app takes users back


@pytest.fixture
def billing_app(make_app, stripe_fake, stripe_settings):
    stripe_fake.reset()
    yield make_app(**stripe_settings)
    stripe_fake.reset()


@pytest.fixture
def billing_client(billing_app):
    return billing_app.test_client()


@pytest.fixture
def customer(billing_app, account):
    """The account's Stripe customer, cus_A."""
    set_plan(billing_app, account, None, stripe_customer_id="cus_A")
    return "cus_A"


@pytest.fixture
def attention(billing_client):
    """() -> the billing notices listed by GET /admin/billing/attention."""

    def listed():
        response = billing_client.get("/admin/billing/attention", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]

    return listed


@pytest.fixture
def billing_server(billing_app):
    """The billing app on a threaded loopback server: deliveries that really run side by side."""
    server = make_server("127.0.0.1", 0, billing_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
