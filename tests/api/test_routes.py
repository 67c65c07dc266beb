"""Models, health, version, authentication and the error shape of every route."""

import os

import pytest
from sqlalchemy import update

from lunos.extensions import db
from lunos.models import ApiKey


def test_models_list_and_one(client, auth):
    listing = client.get("/v1/models", headers=auth).get_json()
    assert listing["object"] == "list"
    claude = next(m for m in listing["data"] if m["id"] == "test/claude")
    assert claude["pricing"] == {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0}
    assert claude["context_length"] == 200000 and claude["owned_by"] == "fake-anthropic"
    assert client.get("/v1/models/test/claude", headers=auth).get_json()["id"] == "test/claude"
    missing = client.get("/v1/models/nope/none", headers=auth)
    assert missing.status_code == 404
    error = missing.get_json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model")


def test_health_ready_version(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/version").get_json()["version"]


def test_readyz_is_503_when_database_is_unreachable(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["type"] == "service_unavailable"


def test_readyz_checks_redis_when_configured(make_app):
    down = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client().get("/readyz")
    assert down.status_code == 503 and "Redis" in down.get_json()["error"]["message"]
    url = os.environ.get("LUNOS_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis check skipped: LUNOS_TEST_REDIS_URL is not set")
    assert make_app(REDIS_URL=url).test_client().get("/readyz").status_code == 200


def test_every_response_has_a_request_id(client, auth):
    ids = {client.get(path, headers=auth).headers["x-request-id"] for path in ("/healthz", "/nope", "/v1/models")}
    assert len(ids) == 3


@pytest.mark.parametrize(
    "method, path, status, kind",
    [
        ("get", "/nope", 404, "not_found_error"),
        ("delete", "/v1/chat/completions", 405, "invalid_request_error"),
        ("post", "/v1/models", 405, "invalid_request_error"),
    ],
)
def test_routing_errors_are_openai_shaped(client, method, path, status, kind):
    response = getattr(client, method)(path)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["type"] == kind and set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer sk-lunos-unknown"},
        {"Authorization": "Basic abc"},
        {"X-API-Key": "nope"},
    ],
)
def test_bad_credentials_are_401(client, headers):
    response = client.post("/v1/chat/completions", headers=headers, json={"messages": []})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"


def test_x_api_key_header_is_accepted(client, api_key):
    assert client.get("/v1/models", headers={"X-API-Key": api_key}).status_code == 200


@pytest.mark.parametrize("column", ["revoked_at", "expires_at"])
def test_revoked_or_expired_key_is_401(app, client, auth, column):
    with app.app_context():
        db.session.execute(update(ApiKey).values({column: db.func.now()}))
        db.session.commit()
    response = client.get("/v1/models", headers=auth)
    assert response.status_code == 401
