"""CORS for browser clients: preflights answered without a key, the answers (errors too) readable
by scripts of the allowed origins, and nothing of it on the dashboard, the admin API or Stripe's
webhooks. The last test is a real browser calling the gateway from another origin."""

import threading
from http.server import BaseHTTPRequestHandler

import pytest
from werkzeug.serving import make_server

from lunos.config import ConfigError, load_settings
from tests.api.test_chat import chat
from tests.conftest import set_plan, usage_events
from tests.fake_http import LoopbackServer, stop

PAGE_ORIGIN = "https://app.example.com"
# What the openai JS SDK sends from a browser, besides the safelisted headers.
SDK_HEADERS = (
    "authorization, content-type, x-app-id, x-stainless-arch, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime"
)


def preflight(client, path="/v1/chat/completions", origin=PAGE_ORIGIN, method="POST", headers=SDK_HEADERS):
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def cors_headers(response):
    return {
        name.lower(): value for name, value in response.headers.items() if name.lower().startswith("access-control-")
    }


def test_a_preflight_is_answered_without_a_key(app, client, account):
    response = preflight(client)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(SDK_HEADERS.split(", ")) <= allowed and "x-api-key" in allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert not usage_events(app, account)


def test_a_preflight_allows_no_header_it_does_not_know(client):
    allowed = preflight(client, headers="x-app-id, x-evil").headers["Access-Control-Allow-Headers"]
    assert "x-app-id" in allowed and "x-evil" not in allowed


def test_answers_and_their_headers_are_readable_by_scripts(client, auth):
    response = client.post(
        "/v1/chat/completions",
        headers={**auth, "Origin": PAGE_ORIGIN},
        buffered=True,
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens", "retry-after"} <= exposed
    assert "Access-Control-Allow-Credentials" not in response.headers  # keys travel in headers, not cookies


def test_errors_carry_the_headers_too(app, client, auth, account):
    unauthenticated = client.get("/v1/models", headers={"Origin": PAGE_ORIGIN})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["Access-Control-Allow-Origin"] == "*"
    set_plan(app, account, "echo-only")  # 3 requests a minute
    for _ in range(3):
        chat(client, auth)
    limited = client.post(
        "/v1/chat/completions",
        headers={**auth, "Origin": PAGE_ORIGIN},
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert limited.status_code == 429 and limited.headers["Access-Control-Allow-Origin"] == "*"
    assert "retry-after" in limited.headers["Access-Control-Expose-Headers"]
    not_found = client.get("/v1/nothing-here", headers={"Origin": PAGE_ORIGIN})
    assert not_found.status_code == 404 and not_found.headers["Access-Control-Allow-Origin"] == "*"


def test_a_streamed_answer_carries_them(client, auth):
    response = chat(client, {**auth, "Origin": PAGE_ORIGIN}, stream=True)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_listed_origins_are_echoed_and_others_get_nothing(make_app, api_key):
    client = make_app(CORS_ORIGINS=(PAGE_ORIGIN, "http://localhost:5173")).test_client()
    allowed = preflight(client, origin="http://localhost:5173")
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "Origin" in allowed.headers["Vary"]
    answer = client.get("/v1/models", headers={"Authorization": f"Bearer {api_key}", "Origin": PAGE_ORIGIN})
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN and "Origin" in answer.headers["Vary"]

    stranger = "https://evil.example"
    assert not cors_headers(preflight(client, origin=stranger))
    refused = client.get("/v1/models", headers={"Authorization": f"Bearer {api_key}", "Origin": stranger})
    assert refused.status_code == 200 and not cors_headers(refused)
    assert "Origin" in refused.headers["Vary"], "a cache must not hand one origin's answer to another"


def test_none_turns_cors_off(make_app):
    client = make_app(CORS_ORIGINS=()).test_client()
    assert not cors_headers(preflight(client))
    assert not cors_headers(client.get("/v1/version", headers={"Origin": PAGE_ORIGIN}))


@pytest.mark.parametrize("path", ["/dashboard/login", "/admin/accounts", "/v1/billing/webhooks", "/healthz"])
def test_never_on_the_dashboard_the_admin_api_or_webhooks(make_app, path):
    client = make_app(ADMIN_TOKEN="admin-secret").test_client()
    assert not cors_headers(preflight(client, path=path))
    get = client.get(path, headers={"Origin": PAGE_ORIGIN, "Authorization": "Bearer admin-secret"})
    post = client.post(path, headers={"Origin": PAGE_ORIGIN}, data="{}")
    assert not cors_headers(get) and not cors_headers(post)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("*", ("*",)),
        ("none", ()),
        (" https://App.example.com/ , http://localhost:5173", ("https://app.example.com", "http://localhost:5173")),
    ],
)
def test_the_setting(value, expected):
    assert load_settings({"LUNOS_CORS_ORIGINS": value})["CORS_ORIGINS"] == expected
    assert load_settings({})["CORS_ORIGINS"] == ("*",)


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/path", "*, https://a.example", ","])
def test_a_bad_setting_names_the_variable(value):
    with pytest.raises(ConfigError, match="LUNOS_CORS_ORIGINS"):
        load_settings({"LUNOS_CORS_ORIGINS": value})


# A real browser: a page served from one origin calls the gateway, on another, with a key.


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>a browser client</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def page_origin():
    page = LoopbackServer(_Page)
    yield page.url
    page.close()


def served(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


FETCH = """
const [url, key, done] = arguments;
fetch(url + "/v1/chat/completions", {method: "POST", headers: {
    "Authorization": "Bearer " + key, "Content-Type": "application/json", "X-App-ID": "browser-app",
    "X-Stainless-Lang": "js", "X-Stainless-Retry-Count": "0"},
  body: JSON.stringify({model: "test/echo", messages: [{role: "user", content: "from a page"}]})})
  .then(async r => done({status: r.status, body: await r.json(), requestId: r.headers.get("x-request-id"),
                         remaining: r.headers.get("x-ratelimit-remaining-requests")}))
  .catch(e => done({failed: String(e)}));
"""


def test_a_browser_calls_the_gateway_from_another_origin(
    browser,
    page_origin,
    make_app,
    app,
    api_key,
    account,
):
    gateway, gateway_url = served(app)
    listing_another, other_url = served(make_app(CORS_ORIGINS=("https://elsewhere.example",)))
    try:
        browser.set_script_timeout(10)
        browser.get(page_origin + "/")
        answer = browser.execute_async_script(FETCH, gateway_url, api_key)
        assert answer.get("status") == 200, answer
        assert answer["body"]["choices"][0]["message"]["content"] == "from a page"
        assert answer["requestId"] and answer["remaining"] is not None
        [event] = usage_events(app, account)
        assert event.app_id == "browser-app"

        wrong_key = browser.execute_async_script(FETCH, gateway_url, "sk-lunos-wrong")
        assert wrong_key["status"] == 401 and wrong_key["body"]["error"]["code"] == "invalid_api_key"

        blocked = browser.execute_async_script(FETCH, other_url, api_key)
        assert "failed" in blocked, "an origin that is not listed cannot read the gateway"
    finally:
        stop(gateway)
        stop(listing_another)
