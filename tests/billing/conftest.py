import pytest

from tests.stripe_fake import FakeStripe

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture(scope="session")
def stripe_fake():
    fake = FakeStripe()
    yield fake
    fake.close()


@pytest.fixture
def billing_app(make_app, stripe_fake):
    stripe_fake.reset()
    return make_app(STRIPE_SECRET_KEY="sk_test_lunos", STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                    STRIPE_API_BASE=stripe_fake.url)


@pytest.fixture
def billing_client(billing_app):
    return billing_app.test_client()
