"""What each kind of key may do: billing and apps are for management keys; an inference key
reads only its own usage and generations, its key and the balance."""

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.services import keys
from tests.api.test_chat import chat

MANAGEMENT_ONLY = [
    ("POST", "/v1/billing/checkout", {"amount_usd": 20}),
    ("POST", "/v1/billing/subscribe", {"plan": "pro"}),
    ("POST", "/v1/billing/portal", {}),
    ("GET", "/v1/billing/subscription", None),
    ("GET", "/v1/apps", None),
    ("PUT", "/v1/apps/shop", {"name": "Storefront"}),
    ("DELETE", "/v1/apps/shop", None),
    ("GET", "/v1/keys", None),
]


def call(client, method, path, headers, body=None):
    return client.open(path, method=method, headers=headers, json=body)


@pytest.fixture
def second_key(app, account):
    """Headers of a second inference key of the ``acme`` account, and its id."""
    with app.app_context():
        key, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"], name="second")
        return {"Authorization": f"Bearer {secret}"}, key.id


def key_id(client, headers):
    return client.get("/v1/key", headers=headers).get_json()["data"]["id"]


@pytest.mark.parametrize("method, path, body", MANAGEMENT_ONLY)
def test_an_inference_key_is_refused_what_needs_a_management_key(client, auth, method, path, body):
    response = call(client, method, path, auth, body)
    assert response.status_code == 403, response.get_json()
    error = response.get_json()["error"]
    assert error["type"] == "permission_error"
    assert "needs a management key" in error["message"] and "inference key" in error["message"]


@pytest.mark.parametrize("method, path, body", MANAGEMENT_ONLY)
def test_a_management_key_gets_past_the_scope(client, manager, method, path, body):
    # Stripe is not configured here: billing routes that call it say so (503), after the scope.
    response = call(client, method, path, manager, body)
    assert response.status_code != 403, response.get_json()
    assert response.status_code in (200, 404, 503), response.get_json()


def test_the_scope_is_checked_before_the_body(client, auth):
    response = client.post("/v1/billing/checkout", headers=auth, data="{not json", content_type="application/json")
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/v1/key", "/v1/balance", "/v1/credits", "/v1/usage", "/v1/usage/events"])
def test_either_kind_of_key_reads_its_key_balance_and_usage(client, auth, manager, path):
    for headers in (auth, manager):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.get_json())


@pytest.fixture
def two_keys_traffic(client, auth, second_key):
    """Two requests from the first key (app shop), one from the second (app crm)."""
    second, _ = second_key
    mine = [chat(client, {**auth, "X-App-ID": "shop"}).get_json()["id"] for _ in range(2)]
    theirs = chat(client, {**second, "X-App-ID": "crm"}).get_json()["id"]
    return mine, theirs


def test_an_inference_key_reads_only_its_own_usage(client, auth, manager, second_key, two_keys_traffic):
    second, second_id = second_key
    own_id = key_id(client, auth)
    rows = client.get("/v1/usage?group_by=key", headers=auth).get_json()["data"]
    assert [(row["group"], row["requests"]) for row in rows] == [(own_id, 2)]
    apps = client.get("/v1/usage?group_by=app", headers=auth).get_json()["data"]
    assert [row["group"] for row in apps] == ["shop"], "the other key's app is not seen either"
    assert client.get(f"/v1/usage?group_by=key&key={own_id}", headers=auth).status_code == 200
    csv = client.get("/v1/usage?group_by=app&format=csv", headers=auth).get_data(as_text=True)
    assert "shop" in csv and "crm" not in csv

    everything = client.get("/v1/usage?group_by=key", headers=manager).get_json()["data"]
    assert {row["group"]: row["requests"] for row in everything} == {own_id: 2, second_id: 1}
    assert client.get(f"/v1/usage?group_by=key&key={second_id}", headers=manager).get_json()["data"][0]["requests"] == 1


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/usage/events"])
def test_an_inference_key_asking_for_another_keys_usage_is_refused(client, auth, second_key, two_keys_traffic, path):
    _, second_id = second_key
    response = client.get(f"{path}?key={second_id}", headers=auth)
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert (error["type"], error["param"]) == ("permission_error", "key")


def test_an_inference_key_pages_only_its_own_events(client, auth, manager, second_key, two_keys_traffic):
    mine, theirs = two_keys_traffic
    own_id = key_id(client, auth)
    events = client.get("/v1/usage/events", headers=auth).get_json()["data"]
    assert sorted(e["id"] for e in events) == sorted(mine) and {e["key_id"] for e in events} == {own_id}
    page = client.get("/v1/usage/events?limit=1", headers=auth).get_json()
    rest = client.get(f"/v1/usage/events?cursor={page['next_cursor']}", headers=auth).get_json()
    assert sorted(e["id"] for e in page["data"] + rest["data"]) == sorted(mine), "the cursor stays on its key"
    everyone = {e["id"] for e in client.get("/v1/usage/events", headers=manager).get_json()["data"]}
    assert everyone == {*mine, theirs}


def test_an_inference_key_reads_only_its_own_generations(client, auth, manager, second_key, two_keys_traffic):
    second, _ = second_key
    mine, theirs = two_keys_traffic
    assert client.get(f"/v1/generation?id={mine[0]}", headers=auth).status_code == 200
    refused = client.get(f"/v1/generation?id={theirs}", headers=auth)
    assert refused.status_code == 404, "another key's request is not shown, nor said to exist"
    assert client.get(f"/v1/generation?id={theirs}", headers=second).status_code == 200
    for generation in (*mine, theirs):
        assert client.get(f"/v1/generation?id={generation}", headers=manager).status_code == 200
