"""Rate limits: requests/min per key (a key may override its plan) and tokens/min by actual tokens."""

import os

import pytest
from sqlalchemy import update

from lunos.extensions import db
from lunos.models import ApiKey
from tests.api.test_chat import chat
from tests.conftest import set_plan


@pytest.fixture(params=["memory", "redis"])
def app(request, make_app):
    """Each limit in the per-process memory storage and in Redis (one round trip an admission)."""
    if request.param == "memory":
        return make_app()
    url = os.environ.get("LUNOS_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis run of the rate limits skipped: LUNOS_TEST_REDIS_URL is not set")
    return make_app(REDIS_URL=url)  # make_app empties the limiter's storage first


def test_requests_per_minute_429_with_headers(app, client, auth, account):
    set_plan(app, account, "echo-only")  # 3 requests a minute
    responses = [chat(client, auth) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    ok, limited = responses[2], responses[3]
    assert ok.headers["x-ratelimit-limit-requests"] == "3"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    assert ok.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-ratelimit-remaining-tokens" in ok.headers
    error = limited.get_json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"


def test_key_override_beats_plan(app, client, auth):
    with app.app_context():
        db.session.execute(update(ApiKey).values(requests_per_minute=1))
        db.session.commit()
    assert [chat(client, auth).status_code for _ in range(2)] == [200, 429]


def test_tokens_per_minute_counts_actual_tokens(app, client, auth, account, upstream):
    set_plan(app, account, "tiny-tokens")  # 20 tokens a minute; each answer reports 18
    codes = [chat(client, auth, model="test/primary").status_code for _ in range(3)]
    assert codes == [200, 200, 429], "admitted while the window had room, refused once spent"
    assert len(upstream.seen) == 2


def test_streams_carry_rate_limit_headers(app, client, auth):
    response = chat(client, auth, stream=True)
    assert response.headers["x-ratelimit-limit-requests"] == "10000"
