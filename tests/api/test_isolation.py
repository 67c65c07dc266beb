"""Account A's activity is invisible to account B on every route that reads account data."""

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import accounts, keys
from tests.api.test_chat import chat
from tests.dashboard.conftest import csrf_of

MARKERS = ("app-of-a", "key-of-a")


@pytest.fixture
def two_accounts(app, client, account):
    """A (acme) with traffic, a registered app and a named key; B with management and inference keys."""
    with app.app_context():
        a = db.session.get(Account, account)
        _, a_secret = keys.create_key(a, app.config["SECRET_KEY"], name="key-of-a")
        a_key_id = keys.list_keys(account)[-1].id
        _, a_manage = keys.create_key(a, app.config["SECRET_KEY"], name="a-ops", kind=MANAGEMENT)
        b = accounts.create_account("b-corp", 1_000_000)
        _, b_manage = keys.create_key(b, app.config["SECRET_KEY"], name="b-ops", kind=MANAGEMENT)
        _, b_infer = keys.create_key(b, app.config["SECRET_KEY"], name="b-app")
    a_auth = {"Authorization": f"Bearer {a_secret}"}
    answer = chat(client, {**a_auth, "X-App-ID": "app-of-a"}).get_json()
    registered = client.put(
        "/v1/apps/app-of-a", headers={"Authorization": f"Bearer {a_manage}"}, json={"name": "A's app"}
    )
    assert registered.status_code == 200, registered.get_json()
    return {
        "generation": answer["id"],
        "a_key_id": a_key_id,
        "b_manage": {"Authorization": f"Bearer {b_manage}"},
        "b_infer": {"Authorization": f"Bearer {b_infer}"},
    }


ROUTES = [
    "/v1/usage?group_by=app",
    "/v1/usage?group_by=key",
    "/v1/usage?group_by=model",
    "/v1/usage/events",
    "/v1/apps",
    "/v1/keys",
    "/v1/balance",
    "/v1/credits",
    "/v1/key",
    "/v1/billing/subscription",
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("kind", ["b_manage", "b_infer"])
def test_b_never_sees_a(client, two_accounts, route, kind):
    response = client.get(route, headers=two_accounts[kind])
    body = response.get_data(as_text=True)
    assert response.status_code in (200, 403), body
    for marker in (*MARKERS, two_accounts["generation"]):
        assert marker not in body
    if route.startswith("/v1/usage") and response.status_code == 200:
        assert response.get_json()["data"] == []


def test_b_cannot_reach_a_by_id(client, two_accounts):
    b = two_accounts["b_manage"]
    assert client.get(f"/v1/generation?id={two_accounts['generation']}", headers=b).status_code == 404
    assert client.get(f"/v1/keys/{two_accounts['a_key_id']}", headers=b).status_code == 404
    assert client.patch(f"/v1/keys/{two_accounts['a_key_id']}", headers=b, json={"disabled": True}).status_code == 404
    assert client.delete(f"/v1/keys/{two_accounts['a_key_id']}", headers=b).status_code == 404
    assert client.delete("/v1/apps/app-of-a", headers=b).status_code == 404


def test_b_dashboard_shows_none_of_a(client, two_accounts):
    secret = two_accounts["b_manage"]["Authorization"].split()[1]
    page = client.get("/dashboard/login")
    client.post("/dashboard/login", data={"key": secret, "csrf_token": csrf_of(page)})
    for path in ("/dashboard/", "/dashboard/apps", "/dashboard/models", "/dashboard/keys", "/dashboard/billing"):
        body = client.get(path).get_data(as_text=True)
        for marker in MARKERS:
            assert marker not in body, path
