"""Guessing the admin token or a dashboard key: ten failures a minute per client address, then
429 until the minute is over, even for the right secret; counted in the shared storage."""

import os

import pytest
import redis
import requests
from werkzeug.middleware.proxy_fix import ProxyFix

from lunos.extensions import limiter
from lunos.services import throttle
from tests.dashboard.conftest import csrf_of

TOKEN = "admin-test-token"
RIGHT, WRONG = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer guess"}
ATTACKER, OPERATOR = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.2"}


@pytest.fixture
def admin_app(make_app):
    return make_app(ADMIN_TOKEN=TOKEN)


def admin(client, headers, address=ATTACKER):
    return client.get("/admin/accounts", headers=headers, environ_base=address)


def end_the_window(app, scope, address):
    """What the minute passing does: the window's counter expires (memory storage, as in tests)."""
    with app.app_context():
        limiter.storage.clear(throttle._FAILURES.key_for(scope, address))


def test_ten_failures_then_429_even_for_the_right_token_until_the_window_passes(admin_app):
    client = admin_app.test_client()
    assert [admin(client, WRONG).status_code for _ in range(throttle.FAILURES_PER_MINUTE)] == [401] * 10
    for headers in (WRONG, RIGHT, {}):
        locked = admin(client, headers)
        assert locked.status_code == 429, locked.get_json()
        error = locked.get_json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert 1 <= int(locked.headers["Retry-After"]) <= 60
        assert f"try again in {locked.headers['Retry-After']}s" in error["message"]
    assert admin(client, RIGHT, OPERATOR).status_code == 200, "other addresses are not locked out"
    end_the_window(admin_app, "lunos-admin-token", ATTACKER["REMOTE_ADDR"])
    assert admin(client, RIGHT).status_code == 200
    assert admin(client, WRONG).status_code == 401, "a new window, a new count"


def test_the_right_token_never_counts(admin_app):
    client = admin_app.test_client()
    assert {admin(client, RIGHT).status_code for _ in range(30)} == {200}
    assert [admin(client, WRONG).status_code for _ in range(10)] == [401] * 10
    assert admin(client, RIGHT).status_code == 429


def test_without_an_admin_token_there_is_nothing_to_guess(client):
    assert {admin(client, WRONG).status_code for _ in range(15)} == {404}


def sign_in(client, key, address=ATTACKER):
    page = client.get("/dashboard/login", environ_base=address)
    return client.post("/dashboard/login", data={"key": key, "csrf_token": csrf_of(page)}, environ_base=address)


def test_ten_failed_sign_ins_then_429_even_for_the_right_key(app, manager, api_key):
    management_key = manager["Authorization"].removeprefix("Bearer ")
    client = app.test_client()
    guesses = ["sk-lunos-guess", "not-a-key", api_key] * 4  # an inference key does not sign in either
    assert [sign_in(client, guess).status_code for guess in guesses[:10]] == [401] * 10
    locked = sign_in(client, management_key)
    assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 60
    assert "Too many failed sign-ins" in locked.get_data(as_text=True)
    assert client.get("/dashboard/", environ_base=ATTACKER).status_code == 302, "and no session was started"
    assert sign_in(app.test_client(), management_key, OPERATOR).status_code == 302
    end_the_window(app, "lunos-dashboard-sign-in", ATTACKER["REMOTE_ADDR"])
    assert sign_in(client, management_key).status_code == 302


def test_x_forwarded_for_is_not_trusted(admin_app):
    client = admin_app.test_client()
    for n in range(10):
        forged = {**WRONG, "X-Forwarded-For": f"192.0.2.{n}"}
        assert admin(client, forged).status_code == 401
    assert admin(client, {**RIGHT, "X-Forwarded-For": "192.0.2.99"}).status_code == 429


def test_behind_proxy_fix_each_forwarded_client_has_its_own_count(admin_app):
    """What the README tells an operator behind a proxy to do."""
    admin_app.wsgi_app = ProxyFix(admin_app.wsgi_app, x_for=1)
    client = admin_app.test_client()
    for _ in range(10):
        assert admin(client, {**WRONG, "X-Forwarded-For": "192.0.2.1"}).status_code == 401
    assert admin(client, {**RIGHT, "X-Forwarded-For": "192.0.2.1"}).status_code == 429
    assert admin(client, {**RIGHT, "X-Forwarded-For": "192.0.2.2"}).status_code == 200


def test_the_count_holds_across_workers_on_redis(start_gunicorn, database_url):
    url = os.environ.get("LUNOS_TEST_REDIS_URL")
    if not url:
        pytest.skip("shared failure count skipped: LUNOS_TEST_REDIS_URL is not set")
    if database_url.startswith("sqlite"):
        pytest.skip("shared failure count runs once, on PostgreSQL: it is about Redis, not the database")
    store = redis.Redis.from_url(url)
    for key in store.scan_iter("LIMITS:*lunos-admin-token*"):
        store.delete(key)
    base = start_gunicorn(workers=2, LUNOS_REDIS_URL=url, LUNOS_ADMIN_TOKEN=TOKEN)

    def attempt(headers):
        # A new connection each time: the kernel spreads them over both workers.
        return requests.get(f"{base}/admin/accounts", headers={**headers, "Connection": "close"}, timeout=10)

    # With a count per worker, ten failures spread over two would leave each with failures to spare.
    codes = [attempt(WRONG).status_code for _ in range(10)] + [attempt(RIGHT).status_code for _ in range(6)]
    assert codes == [401] * 10 + [429] * 6, codes
    assert any(store.scan_iter("LIMITS:*lunos-admin-token*")), "the count is in Redis"
