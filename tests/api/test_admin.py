"""The operator's /admin API."""

from datetime import datetime, timedelta

import pytest

from tests.api.test_chat import chat

TOKEN = "admin-test-token"


@pytest.fixture
def admin_client(make_app):
    return make_app(ADMIN_TOKEN=TOKEN).test_client()


HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def test_admin_api_is_absent_without_a_token(client):
    assert client.get("/admin/accounts", headers=HEADERS).status_code == 404


def test_wrong_token_is_401(admin_client):
    assert admin_client.get("/admin/accounts", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert admin_client.get("/admin/accounts").status_code == 401


def test_accounts_credits_plans_and_suspension(admin_client, auth, account):
    created = admin_client.post("/admin/accounts", headers=HEADERS, json={"name": "newco", "credits_usd": 3})
    assert created.status_code == 201 and created.get_json()["balance"] == 3.0
    listed = admin_client.get("/admin/accounts", headers=HEADERS).get_json()["data"]
    assert {"acme", "newco"} <= {a["name"] for a in listed}
    assert all(datetime.fromisoformat(a["created_at"]).utcoffset() == timedelta(0) for a in listed), "times say UTC"

    body = {"usd": "1.5", "reason": "support", "reference": "ticket-42"}
    first = admin_client.post(f"/admin/accounts/{account}/credits", headers=HEADERS, json=body).get_json()
    again = admin_client.post(f"/admin/accounts/{account}/credits", headers=HEADERS, json=body).get_json()
    assert first["applied"] is True and again["applied"] is False
    assert again["balance"] == 11.5, "a retried adjustment applies once"
    assert (
        admin_client.post(f"/admin/accounts/{account}/credits", headers=HEADERS, json={"usd": 1}).status_code == 400
    ), "a reason is required"

    assert (
        admin_client.put(f"/admin/accounts/{account}/plan", headers=HEADERS, json={"plan": "pro"}).get_json()["plan"]
        == "pro"
    )
    assert (
        admin_client.put(f"/admin/accounts/{account}/plan", headers=HEADERS, json={"plan": "gold"}).status_code == 400
    )

    assert admin_client.post(f"/admin/accounts/{account}/suspend", headers=HEADERS).get_json()["suspended"] is True
    refused = chat(admin_client, auth)
    assert refused.status_code == 403 and "suspended" in refused.get_json()["error"]["message"]
    admin_client.post(f"/admin/accounts/{account}/unsuspend", headers=HEADERS)
    assert chat(admin_client, auth).status_code == 200
    assert admin_client.get("/admin/accounts/99999", headers=HEADERS).status_code == 404
