"""Stripe sends users back only to this gateway (LUNOS_PUBLIC_URL) or hosts the operator listed
(LUNOS_BILLING_RETURN_HOSTS); the dashboard's return URL never comes from the request."""

import pytest

from lunos import create_app
from lunos.config import ConfigError, load_settings
from lunos.return_urls import ReturnUrls, parse_hosts
from tests.dashboard.conftest import csrf_of

ROUTES = [
    ("/v1/billing/checkout", {"amount_usd": 20}),
    ("/v1/billing/subscribe", {"plan": "pro"}),
    ("/v1/billing/portal", {}),
]
REFUSED = [
    "https://evil.example@app.example/",  # user info: the browser goes to app.example, a reader sees evil
    "https://app.example@evil.example/",
    "https://:@app.example/",
    "https://evil.example/",
    "https://app.example.evil.example/",
    "https://evil.example#@app.example/",
    "https://evil.example?@app.example/",
    "https://app.example\\@evil.example/",
    "https://app.example/\tpath",
    " https://app.example/",
    "http://127.0.0.1:8001/",  # the public URL's host on another port
    "https://app.example:8443/",  # a host listed without a port: its default port only
    "https://app.example:99999/",
    "https://[::1/",
    "//app.example/",
    "/dashboard/billing",
    "javascript:alert(1)",
    "ftp://app.example/",
    "https:///path",
    "https://app.example/" + "a" * 3000,
    123,
    ["https://app.example/"],
    {"url": "https://app.example/"},
    True,
]
ACCEPTED = [
    "http://127.0.0.1:8000/dashboard/billing",
    "http://127.0.0.1:8000",
    "https://app.example/billing?x=1",
    "http://APP.example/",
    "https://app.example:443/",
    "https://shop.example:8443/done",
]


ALLOWED = ReturnUrls("http://127.0.0.1:8000", parse_hosts("app.example, shop.example:8443"))


@pytest.mark.parametrize("url", [url for url in REFUSED if isinstance(url, str)])
def test_the_rule_refuses_other_hosts_user_info_and_odd_urls(url):
    with pytest.raises(ValueError):
        ALLOWED.check(url)


@pytest.mark.parametrize("url", ACCEPTED)
def test_the_rule_accepts_the_public_host_and_listed_hosts(url):
    assert ALLOWED.check(url) == url


@pytest.fixture
def shop_app(make_app, stripe_fake, stripe_settings, account):
    stripe_fake.reset()
    return make_app(**{**stripe_settings, "BILLING_RETURN_HOSTS": "app.example, shop.example:8443"})


@pytest.mark.parametrize("path, body", ROUTES)
def test_a_return_url_elsewhere_is_400_naming_it(shop_app, manager, stripe_fake, path, body):
    client = shop_app.test_client()
    for url in ("https://evil.example@app.example/", "https://evil.example/", 123, ["https://app.example/"]):
        response = client.post(path, headers=manager, json={**body, "return_url": url})
        assert response.status_code == 400, (url, response.get_json())
        error = response.get_json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "return_url")
        assert "return_url" in error["message"]
    assert not stripe_fake.calls, "nothing was sent to Stripe"


def test_an_allowed_return_url_goes_to_stripe_as_given(shop_app, manager, stripe_fake):
    client = shop_app.test_client()
    for url in ("http://127.0.0.1:8000/dashboard/billing", "https://shop.example:8443/done"):
        response = client.post("/v1/billing/checkout", headers=manager, json={"amount_usd": 20, "return_url": url})
        assert response.status_code == 200, response.get_json()
    sent = stripe_fake.calls_to("/v1/checkout/sessions")
    assert [(c.form["success_url"], c.form["cancel_url"]) for c in sent] == [
        ("http://127.0.0.1:8000/dashboard/billing",) * 2,
        ("https://shop.example:8443/done",) * 2,
    ]


def test_without_a_return_url_the_configured_default_is_used(make_app, stripe_settings, stripe_fake, manager):
    stripe_fake.reset()
    app = make_app(**stripe_settings, PUBLIC_URL="https://gateway.example.com")
    assert app.config["BILLING_RETURN_URL"] == "https://gateway.example.com/", "defaults to the public URL"
    for body in ({"amount_usd": 20}, {"amount_usd": 20, "return_url": None}):
        assert app.test_client().post("/v1/billing/checkout", headers=manager, json=body).status_code == 200
    assert {call.form["success_url"] for call in stripe_fake.calls_to("/v1/checkout/sessions")} == {
        "https://gateway.example.com/"
    }


def test_the_dashboard_builds_its_return_url_from_the_public_url_not_the_host_header(
    make_app, stripe_settings, stripe_fake, manager
):
    stripe_fake.reset()
    client = make_app(**stripe_settings, PUBLIC_URL="https://gateway.example.com").test_client()
    page = client.get("/dashboard/login", headers={"Host": "evil.example"})
    secret = manager["Authorization"].split()[1]
    client.post("/dashboard/login", data={"key": secret, "csrf_token": csrf_of(page)}, headers={"Host": "evil.example"})
    page = client.get("/dashboard/billing", headers={"Host": "evil.example"})
    response = client.post(
        "/dashboard/billing/checkout",
        headers={"Host": "evil.example"},
        data={"amount_usd": "20", "csrf_token": csrf_of(page)},
    )
    assert response.status_code == 303 and response.headers["Location"].startswith("https://checkout.stripe.test/")
    [sent] = stripe_fake.calls_to("/v1/checkout/sessions")
    assert sent.form["success_url"] == "https://gateway.example.com/dashboard/billing"


@pytest.mark.parametrize(
    "environ",
    [
        {"LUNOS_BILLING_RETURN_URL": "https://evil.example/"},
        {"LUNOS_BILLING_RETURN_URL": "https://evil.example@127.0.0.1:8000/"},
        {"LUNOS_BILLING_RETURN_URL": "not a url"},
        {"LUNOS_PUBLIC_URL": "https://gateway.example.com", "LUNOS_BILLING_RETURN_URL": "http://127.0.0.1:8000/"},
    ],
)
def test_a_default_return_url_stripe_may_not_use_stops_start_up(environ):
    with pytest.raises(ConfigError, match="LUNOS_BILLING_RETURN_URL"):
        load_settings(environ)


@pytest.mark.parametrize(
    "name, value",
    [
        ("PUBLIC_URL", "gateway.example.com"),
        ("PUBLIC_URL", "ftp://gateway.example.com"),
        ("PUBLIC_URL", "https://user:pw@gateway.example.com"),
        ("PUBLIC_URL", "https://gateway.example.com/?next=x"),
        ("BILLING_RETURN_HOSTS", "app.example/path"),
        ("BILLING_RETURN_HOSTS", "app.example:http"),
        ("BILLING_RETURN_HOSTS", "user@app.example"),
    ],
)
def test_bad_public_url_or_hosts_stop_start_up_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=f"LUNOS_{name}"):
        load_settings({f"LUNOS_{name}": value})
    with pytest.raises(ConfigError, match=f"LUNOS_{name}"):
        create_app({"DATABASE_URL": "sqlite://", name: value})


def test_settings_that_agree_start():
    settings = load_settings(
        {
            "LUNOS_PUBLIC_URL": "https://gateway.example.com/",
            "LUNOS_BILLING_RETURN_HOSTS": "app.example, shop.example:8443,",
            "LUNOS_BILLING_RETURN_URL": "https://shop.example:8443/thanks",
        }
    )
    assert settings["PUBLIC_URL"] == "https://gateway.example.com"
    assert settings["BILLING_RETURN_HOSTS"] == ("app.example", "shop.example:8443")
    assert load_settings({})["BILLING_RETURN_URL"] == "http://127.0.0.1:8000/"
