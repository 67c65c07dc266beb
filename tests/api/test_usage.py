"""X-App-ID tracking, usage analytics and apps; and that an account only ever sees its own."""

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from lunos.services import accounts, keys
from tests.api.test_chat import chat
from tests.upstream import Reply


@pytest.fixture
def traffic(client, auth, upstream):
    """Three requests from app-a, two from app-b (one of which fails), one untagged."""
    for _ in range(3):
        assert chat(client, {**auth, "X-App-ID": "app-a"}, model="test/primary").status_code == 200
    assert chat(client, {**auth, "X-App-ID": "app-b"}, model="test/echo").status_code == 200
    upstream.script("primary", Reply(status=500))
    assert chat(client, {**auth, "X-App-ID": "app-b"}, model="test/primary").status_code == 502
    assert chat(client, auth).status_code == 200


@pytest.fixture
def other_manager(app):
    """A management key of another account: it reads all of that account, and nothing of acme's."""
    with app.app_context():
        other = accounts.create_account("other-co", 5_000_000)
        _, secret = keys.create_key(other, app.config["SECRET_KEY"], kind="management")
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("value", ["has space", "x" * 65, "emoji-🙂", "semi;colon"])
def test_bad_app_id_is_400_naming_the_header(client, auth, value):
    response = client.post(
        "/v1/chat/completions",
        headers={**auth, "X-App-ID": value.encode("utf-8").decode("latin-1")},
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "X-App-ID"


def by_group(response):
    assert response.status_code == 200, response.get_json()
    return {row["group"]: row for row in response.get_json()["data"]}


def test_usage_by_app(client, auth, traffic):
    rows = by_group(client.get("/v1/usage?group_by=app", headers=auth))
    assert set(rows) == {"app-a", "app-b", "unknown"}
    a, b = rows["app-a"], rows["app-b"]
    assert (a["requests"], a["errors"], a["prompt_tokens"], a["completion_tokens"]) == (3, 0, 33, 21)
    assert a["cost"] == pytest.approx(3 * 25 / 1_000_000)
    assert (b["requests"], b["errors"]) == (2, 1)
    assert a["latency_p50_ms"] is not None and a["latency_p95_ms"] >= a["latency_p50_ms"]


def test_usage_by_model_key_day_hour_and_filters(client, auth, traffic):
    models = by_group(client.get("/v1/usage?group_by=model", headers=auth))
    assert models["test/primary"]["requests"] == 4 and models["test/echo"]["requests"] == 2
    [key_row] = client.get("/v1/usage?group_by=key", headers=auth).get_json()["data"]
    assert key_row["requests"] == 6 and key_row["name"] == "default"
    [day] = client.get("/v1/usage?group_by=day", headers=auth).get_json()["data"]
    assert day["requests"] == 6 and len(day["group"]) == 10
    [hour] = client.get("/v1/usage?group_by=hour", headers=auth).get_json()["data"]
    assert hour["group"].endswith(":00:00Z")
    filtered = by_group(client.get("/v1/usage?group_by=model&app=app-b", headers=auth))
    assert {k: v["requests"] for k, v in filtered.items()} == {"test/echo": 1, "test/primary": 1}
    assert client.get("/v1/usage?group_by=app&from=2020-01-01&to=2020-02-01", headers=auth).get_json()["data"] == []


def test_usage_csv_export(client, auth, traffic):
    response = client.get("/v1/usage?group_by=app&format=csv", headers=auth)
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {r["app"]: int(r["requests"]) for r in rows} == {"app-a": 3, "app-b": 2, "unknown": 1}
    numbers = [value for row in rows for key, value in row.items() if key != "app" and value]
    assert numbers and not [v for v in numbers if "e" in v.lower()], "plain decimals, as spreadsheets read them"
    assert all(Decimal(r["cost"]) > 0 for r in rows)


def test_a_format_other_than_json_or_csv_is_a_400_naming_it(client, auth):
    assert client.get("/v1/usage?format=json", headers=auth).status_code == 200
    response = client.get("/v1/usage?format=xml", headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "format"


def test_a_generation_without_an_id_is_a_400_naming_it(client, auth):
    response = client.get("/v1/generation", headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "id"


def test_usage_per_app_per_day(client, auth, traffic):
    rows = client.get("/v1/usage?group_by=app,day", headers=auth).get_json()["data"]
    assert {(r["app"], r["requests"]) for r in rows} == {("app-a", 3), ("app-b", 2), ("unknown", 1)}
    assert all(len(r["day"]) == 10 and "group" not in r for r in rows)


@pytest.mark.parametrize(
    "query, param",
    [
        ("group_by=week", "group_by"),
        ("group_by=app,app", "group_by"),
        ("group_by=", "group_by"),
        ("group_by=app,", "group_by"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=yesterday", "from"),
        ("from=", "from"),
        ("to=", "to"),
        ("key=abc", "key"),
    ],
)
def test_bad_usage_queries_are_400(client, auth, query, param):
    response = client.get(f"/v1/usage?{query}", headers=auth)
    assert response.status_code == 400 and response.get_json()["error"]["param"] == param


def test_events_page_with_a_cursor(client, auth, traffic):
    seen, cursor = [], None
    for _ in range(5):
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(f"/v1/usage/events?{query}", headers=auth).get_json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    assert client.get("/v1/usage/events?cursor=not-a-cursor", headers=auth).status_code == 400
    assert client.get("/v1/usage/events?limit=0", headers=auth).status_code == 400
    apps_b = client.get("/v1/usage/events?app=app-b", headers=auth).get_json()["data"]
    assert {e["status"] for e in apps_b} == {"ok", "upstream_error"}
    assert all(datetime.fromisoformat(e["created_at"]).utcoffset() == timedelta(0) for e in apps_b), "UTC, said so"


def test_apps_registered_and_seen(client, manager, traffic):
    assert client.put("/v1/apps/app-a", headers=manager, json={"name": "Storefront"}).status_code == 200
    assert client.put("/v1/apps/new-app", headers=manager, json={"name": "Not used yet"}).status_code == 200
    listed = {a["app_id"]: a for a in client.get("/v1/apps", headers=manager).get_json()["data"]}
    assert listed["app-a"] == {"app_id": "app-a", "name": "Storefront", "registered": True}
    assert listed["app-b"]["registered"] is False and listed["new-app"]["registered"] is True
    assert by_group(client.get("/v1/usage?group_by=app", headers=manager))["app-a"]["name"] == "Storefront"
    assert client.put("/v1/apps/bad id", headers=manager, json={"name": "x"}).status_code in (400, 404)
    assert client.put("/v1/apps/app-a", headers=manager, json={"name": ""}).status_code == 400
    assert client.delete("/v1/apps/new-app", headers=manager).status_code == 200
    assert client.delete("/v1/apps/new-app", headers=manager).status_code == 404


def test_accounts_never_see_each_other(client, auth, manager, other_manager, traffic):
    answer = chat(client, {**auth, "X-App-ID": "secret-app"}).get_json()
    client.put("/v1/apps/secret-app", headers=manager, json={"name": "Secret"})
    assert client.get("/v1/usage?group_by=app", headers=other_manager).get_json()["data"] == []
    assert client.get("/v1/usage/events", headers=other_manager).get_json()["data"] == []
    assert client.get("/v1/apps", headers=other_manager).get_json()["data"] == []
    assert client.get(f"/v1/generation?id={answer['id']}", headers=other_manager).status_code == 404
    assert client.delete("/v1/apps/secret-app", headers=other_manager).status_code == 404
    assert client.get("/v1/balance", headers=other_manager).get_json()["balance"] == 5.0
    mine = {row["group"] for row in client.get("/v1/usage?group_by=app", headers=auth).get_json()["data"]}
    assert "secret-app" in mine


@pytest.mark.parametrize(
    "window, counted",
    [
        (("2026-01-01T10:05:00Z", "2026-01-01T10:10:00Z"), ("2026-01-01T10:00:00+00:00", "2026-01-01T11:00:00+00:00")),
        (("2026-01-01T10:00:00Z", "2026-01-01T12:00:00Z"), ("2026-01-01T10:00:00+00:00", "2026-01-01T12:00:00+00:00")),
    ],
)
def test_the_answer_names_the_whole_hours_it_sums(client, auth, window, counted):
    answer = client.get(f"/v1/usage?from={window[0]}&to={window[1]}", headers=auth).get_json()
    assert (answer["from"], answer["to"]) == counted
