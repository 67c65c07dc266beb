"""Key management with management keys, and what a key's own settings enforce."""

from datetime import UTC, datetime, timedelta

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import accounts, keys
from tests.api.test_chat import chat
from tests.conftest import money


@pytest.fixture
def admin(app, account):
    """Headers of a management key of the ``acme`` account."""
    with app.app_context():
        _, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"], kind=MANAGEMENT)
    return {"Authorization": f"Bearer {secret}"}


def new_key(client, admin, **body):
    response = client.post("/v1/keys", headers=admin, json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    return created, {"Authorization": f"Bearer {created['key']}"}


def test_create_list_update_revoke(client, admin):
    created, headers = new_key(client, admin, name="backend", requests_per_minute=100)
    assert created["key"].startswith("sk-lunos-") and created["kind"] == "inference"
    listed = client.get("/v1/keys", headers=admin).get_json()["data"]
    assert created["id"] in [k["id"] for k in listed] and all("key" not in k for k in listed)
    assert all(datetime.fromisoformat(k["created_at"]).utcoffset() == timedelta(0) for k in listed), "times say UTC"
    assert chat(client, headers).status_code == 200
    patched = client.patch(f"/v1/keys/{created['id']}", headers=admin, json={"name": "renamed", "disabled": True})
    assert patched.get_json()["name"] == "renamed" and patched.get_json()["disabled"] is True
    assert chat(client, headers).status_code == 401
    client.patch(f"/v1/keys/{created['id']}", headers=admin, json={"disabled": False})
    assert chat(client, headers).status_code == 200
    assert client.delete(f"/v1/keys/{created['id']}", headers=admin).get_json()["revoked"] is True
    assert chat(client, headers).status_code == 401


def test_management_keys_cannot_call_models_and_inference_keys_cannot_manage(client, admin, auth):
    response = chat(client, admin)
    assert response.status_code == 403 and response.get_json()["error"]["type"] == "permission_error"
    assert client.get("/v1/keys", headers=auth).status_code == 403
    assert client.post("/v1/keys", headers=auth, json={"name": "x"}).status_code == 403
    assert client.get("/v1/usage", headers=admin).status_code == 200, "management keys read usage"


def test_expired_key_is_401(app, client, admin):
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    created, headers = new_key(client, admin, expires_at=soon)
    assert chat(client, headers).status_code == 200
    with app.app_context():  # a minute later
        from lunos.models import ApiKey

        db.session.get(ApiKey, created["id"]).expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.session.commit()
    assert chat(client, headers).status_code == 401


def test_expiry_in_the_past_is_400(client, admin):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = client.post("/v1/keys", headers=admin, json={"expires_at": past})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "expires_at"
    created, _ = new_key(client, admin)
    response = client.patch(f"/v1/keys/{created['id']}", headers=admin, json={"expires_at": past})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "expires_at"


def test_allowed_models_and_apps(client, admin, upstream):
    _, headers = new_key(client, admin, allowed_models=["test/echo"], allowed_apps=["shop"])
    assert chat(client, {**headers, "X-App-ID": "shop"}).status_code == 200
    denied_app = chat(client, {**headers, "X-App-ID": "other"})
    assert denied_app.status_code == 403 and denied_app.get_json()["error"]["param"] == "X-App-ID"
    denied_model = chat(client, {**headers, "X-App-ID": "shop"}, model="test/primary")
    assert denied_model.status_code == 403 and denied_model.get_json()["error"]["param"] == "model"
    assert not upstream.seen


def test_credit_limit_caps_a_key_and_resets_with_its_window(app, client, admin, account):
    # test/primary reserves 5 prompt + 10 * 2 output micro-USD with max_tokens 10, and costs 25.
    created, headers = new_key(client, admin, credit_limit_usd="0.0001", credit_limit_reset="daily")
    body = {"model": "test/primary", "max_tokens": 10}
    codes = [chat(client, headers, **body).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 402, codes  # 100 micro-USD: four answers at most
    refused = chat(client, headers, **body).get_json()["error"]
    assert refused["code"] == "key_limit_exceeded"
    spent = client.get(f"/v1/keys/{created['id']}", headers=admin).get_json()["limit_window_spent_usd"]
    assert spent <= 0.0001
    balance, ledger, reserved = money(app, account)
    assert balance == ledger and reserved == 0
    with app.app_context():  # yesterday's window: the next request starts a new one
        from lunos.models import ApiKey

        key = db.session.get(ApiKey, created["id"])
        key.window_start = key.window_start - timedelta(days=1) if key.window_start else None
        db.session.commit()
    assert chat(client, headers, **body).status_code == 200


@pytest.mark.parametrize(
    "body, param",
    [
        ({"kind": "root"}, "kind"),
        ({"credit_limit_reset": "hourly"}, "credit_limit_reset"),
        ({"credit_limit_reset": "daily"}, "credit_limit_reset"),
        ({"allowed_apps": ["bad app"]}, "allowed_apps"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"colour": "blue"}, "colour"),
        ({"disabled": "yes"}, "disabled"),
        ({"disabled": "false"}, "disabled"),
        ({"disabled": 0}, "disabled"),
    ],
)
def test_bad_key_settings_are_400(client, admin, body, param):
    response = client.post("/v1/keys", headers=admin, json=body)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == param


@pytest.mark.parametrize("amount", [1e300, "1e300", 1e20])
def test_a_credit_limit_too_large_says_so(client, admin, amount):
    response = client.post("/v1/keys", headers=admin, json={"credit_limit_usd": amount})
    error = response.get_json()["error"]
    assert response.status_code == 400 and error["param"] == "credit_limit_usd"
    assert "USD is beyond" in error["message"], error


def test_a_credit_limit_is_kept_to_the_micro_dollar(client, admin):
    created, _headers = new_key(client, admin, credit_limit_usd="0.0000015")
    assert created["credit_limit_usd"] == 0.000002  # half-even, to the micro-USD


def test_keys_of_another_account_are_invisible(app, client, admin):
    with app.app_context():
        other = accounts.create_account("other-keys", 1_000_000)
        key_id = keys.create_key(other, app.config["SECRET_KEY"])[0].id
    assert client.get(f"/v1/keys/{key_id}", headers=admin).status_code == 404
    assert client.patch(f"/v1/keys/{key_id}", headers=admin, json={"disabled": True}).status_code == 404
    assert client.delete(f"/v1/keys/{key_id}", headers=admin).status_code == 404
    assert key_id not in [k["id"] for k in client.get("/v1/keys", headers=admin).get_json()["data"]]


def test_cli_makes_management_keys(app, account):
    result = app.test_cli_runner().invoke(args=["lunos", "create-key", "--account", "acme", "--management"])
    assert result.exit_code == 0 and "management key" in result.output
    secret = result.output.strip().splitlines()[-1]
    assert app.test_client().get("/v1/keys", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_a_worker_keeps_a_key_lookup_at_most_its_cache_time(make_app, account, api_key):
    """Two apps are two workers: a key revoked through one is refused by the other once the
    other's cached lookup is older than LUNOS_KEY_CACHE_S (here 0.3 s), and at once by the first."""
    import time

    first, second = make_app(KEY_CACHE_S=0.3), make_app(KEY_CACHE_S=0.3)
    headers = {"Authorization": f"Bearer {api_key}"}
    assert chat(first.test_client(), headers).status_code == 200
    assert chat(second.test_client(), headers).status_code == 200  # now cached by the second
    with first.app_context():
        keys.revoke_key(keys.list_keys(account)[0])
    assert chat(first.test_client(), headers).status_code == 401, "the worker that revoked it: at once"
    assert chat(second.test_client(), headers).status_code == 200, "the other: its copy, for now"
    time.sleep(0.35)
    assert chat(second.test_client(), headers).status_code == 401


def test_a_burst_with_one_key_waits_for_one_lookup():
    """Requests that find a key's row expired at once share one lookup; a lookup that fails
    leaves the others to look it up themselves, and an unknown key is never kept."""
    import threading
    import time

    cache, calls, lock = keys.KeyCache(ttl_s=5), [], threading.Lock()

    def fetch(row):
        def slow():
            with lock:
                calls.append(row)
            time.sleep(0.2)
            if row == "broken":
                raise RuntimeError("database away")
            return row

        return slow

    def burst(secret_hash, row, n=20):
        results = []

        def one():
            try:
                results.append(cache.lookup(secret_hash, fetch(row)))
            except RuntimeError as exc:
                results.append(str(exc))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    assert burst("a", ("row-a",)) == [("row-a",)] * 20 and len(calls) == 1
    calls.clear()
    assert burst("unknown", None, n=3) == [None] * 3 and len(calls) == 3
    calls.clear()
    assert burst("b", "broken", n=3) == ["database away"] * 3 and len(calls) == 3
    assert cache.get("unknown") is None and cache.get("b") is None
    calls.clear()
    cache.ttl_s = 0.1  # a lookup slower than the cache keeps a row: its waiters still take its row
    assert burst("c", ("row-c",), n=10) == [("row-c",)] * 10 and len(calls) == 1


def test_a_lookup_in_flight_when_the_cache_is_cleared_is_neither_kept_nor_shared():
    """A key changed through this worker (revoked, say) clears the cache: a lookup that began
    before is not kept, and a request that waited for it looks the key up again."""
    import threading

    cache, release, answers = keys.KeyCache(ttl_s=5), threading.Event(), {}

    def before_the_change():
        release.wait(5)
        return ("valid",)

    first = threading.Thread(target=lambda: answers.update(first=cache.lookup("k", before_the_change)))
    first.start()
    while "k" not in cache._fetching:
        threading.Event().wait(0.001)
    cache.clear()
    second = threading.Thread(target=lambda: answers.update(second=cache.lookup("k", lambda: ("revoked",))))
    second.start()
    threading.Event().wait(0.05)  # the second waits for the lookup in flight
    release.set()
    first.join(5)
    second.join(5)
    assert answers == {"first": ("valid",), "second": ("revoked",)}
    assert cache.get("k") == ("revoked",)
