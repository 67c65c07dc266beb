"""Dashboard sessions end on the server when signing out (that browser's only), expire there,
and every dashboard response forbids framing, sniffing and foreign content."""

import re
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import func, select, update

from lunos.extensions import db
from lunos.models import DashboardSession
from lunos.services.keys import as_utc
from tests.dashboard.conftest import csrf_of

COOKIE = "lunos_session"


def browser_sign_in(base, secret):
    """A requests session signed in on a real server; returns it and the page after sign-in."""
    browser = requests.Session()
    page = browser.get(f"{base}/dashboard/login", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    home = browser.post(f"{base}/dashboard/login", data={"key": secret, "csrf_token": token}, timeout=10)
    assert home.status_code == 200 and home.url.endswith("/dashboard/"), home.text
    return browser, home


def opens(base, cookie):
    """Does this cookie, replayed by someone else, open the overview?"""
    page = requests.get(f"{base}/dashboard/", cookies={COOKIE: cookie}, allow_redirects=False, timeout=10)
    assert page.status_code in (200, 302)
    return page.status_code == 200


def sign_in(client, secret):
    page = client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"key": secret, "csrf_token": csrf_of(page)}).status_code == 302
    return client


def sign_out(client):
    page = client.get("/dashboard/")
    assert client.post("/dashboard/logout", data={"csrf_token": csrf_of(page)}).status_code == 302


def sessions(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(DashboardSession))


def test_a_cookie_captured_before_sign_out_opens_nothing_after_it(live_server, management_key):
    browser, home = browser_sign_in(live_server, management_key)
    captured = browser.cookies[COOKIE]
    assert opens(live_server, captured), "a live session's cookie works, from anywhere"
    token = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
    signed_out = browser.post(f"{live_server}/dashboard/logout", data={"csrf_token": token}, timeout=10)
    assert signed_out.url.endswith("/dashboard/login")
    assert not opens(live_server, captured), "signing out ended the session on the server"
    assert browser.get(f"{live_server}/dashboard/keys", allow_redirects=False, timeout=10).status_code == 302


def test_signing_out_ends_only_that_browsers_session(app, make_app, management_key):
    laptop, phone = sign_in(app.test_client(), management_key), sign_in(app.test_client(), management_key)
    assert sessions(app) == 2
    sign_out(laptop)
    assert laptop.get("/dashboard/").status_code == 302
    assert phone.get("/dashboard/").status_code == 200, "the other browser is still signed in"
    assert sessions(app) == 1


def test_the_session_expires_on_the_server_whatever_the_cookie_says(app, signed_in):
    assert signed_in.get("/dashboard/").status_code == 200
    with app.app_context():
        [row] = db.session.scalars(select(DashboardSession)).all()
        assert timedelta(hours=11) < as_utc(row.expires_at) - datetime.now(UTC) <= timedelta(hours=12)
        past = datetime.now(UTC) - timedelta(seconds=1)
        db.session.execute(update(DashboardSession).values(expires_at=past))
        db.session.commit()
    assert signed_in.get("/dashboard/").status_code == 302


def test_signing_in_again_replaces_the_browsers_session_and_sweeps_expired_ones(app, signed_in, management_key):
    old_cookie = signed_in.get_cookie(COOKIE).value
    other = sign_in(app.test_client(), management_key)
    with app.app_context():  # the other browser's session has expired
        db.session.execute(
            update(DashboardSession)
            .where(DashboardSession.id != _row_of(app, old_cookie))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        db.session.commit()
    sign_in(signed_in, management_key)
    assert signed_in.get_cookie(COOKIE).value != old_cookie
    assert sessions(app) == 1, "the replaced session and the expired one are gone"
    replay = app.test_client()
    replay.set_cookie(COOKIE, old_cookie)
    assert replay.get("/dashboard/").status_code == 302
    assert other.get("/dashboard/").status_code == 302
    assert signed_in.get("/dashboard/").status_code == 200


def _row_of(app, cookie):
    """The row id of a session cookie's session."""
    from lunos.dashboard.session import _row_id

    serializer = app.session_interface.get_signing_serializer(app)
    return _row_id(serializer.loads(cookie)["sid"])


def test_no_key_is_in_the_cookie(app, signed_in, management_key):
    contents = app.session_interface.get_signing_serializer(app).loads(signed_in.get_cookie(COOKIE).value)
    assert set(contents) - {"_permanent"} == {"sid", "csrf"} and management_key not in str(contents)


def test_dashboard_responses_forbid_framing_sniffing_and_foreign_content(live_server, management_key):
    browser, _home = browser_sign_in(live_server, management_key)
    answers = [
        requests.get(f"{live_server}/dashboard/login", timeout=10),
        requests.get(f"{live_server}/dashboard/apps", allow_redirects=False, timeout=10),
        browser.get(f"{live_server}/dashboard/billing", timeout=10),
        browser.get(f"{live_server}/dashboard/static/dashboard.css", timeout=10),
    ]
    for answer in answers:
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        policy = dict(part.strip().split(" ", 1) for part in answer.headers["Content-Security-Policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
        assert policy["style-src"] == "'self'"
        assert set(policy["form-action"].split()) == {
            "'self'",
            "https://checkout.stripe.com",
            "https://billing.stripe.com",
        }
    assert answers[2].headers["Cache-Control"] == "no-store"
    assert "no-store" not in answers[3].headers.get("Cache-Control", ""), "the stylesheet may be cached"
    # The pages fit the policy: no script, no inline style, only their own stylesheet.
    page = answers[2].text
    assert "<script" not in page and "style=" not in page
    assert re.findall(r'<link[^>]+href="([^"]+)"', page) == ["/dashboard/static/dashboard.css"]
    assert requests.get(f"{live_server}/v1/version", timeout=10).headers["X-Content-Type-Options"] == "nosniff"
