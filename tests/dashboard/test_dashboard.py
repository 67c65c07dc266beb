"""The dashboard through the test client: sign-in, CSRF, the cookie, and each page."""

import re

from sqlalchemy import update

from lunos.extensions import db
from lunos.models import ApiKey
from tests.api.test_chat import chat
from tests.dashboard.conftest import csrf_of


def test_pages_need_a_session(client):
    response = client.get("/dashboard/apps")
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard/login")


def test_only_management_keys_sign_in(client, api_key):
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"key": api_key, "csrf_token": csrf_of(page)})
    assert response.status_code == 401 and "management key" in response.get_data(as_text=True)
    response = client.post("/dashboard/login", data={"key": "sk-lunos-wrong", "csrf_token": csrf_of(page)})
    assert response.status_code == 401


def test_login_without_csrf_token_is_refused(client, management_key):
    client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"key": management_key}).status_code == 400


def test_session_cookie_flags(client, management_key, make_app):
    page = client.get("/dashboard/login")
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = make_app(COOKIE_SECURE=True).test_client().get("/dashboard/login").headers["Set-Cookie"]
    assert "Secure" in secure


def test_overview_apps_models_show_usage(signed_in, auth):
    for app_id in ("shop", "shop", "crm"):
        chat(signed_in, {**auth, "X-App-ID": app_id}, model="test/primary")
    overview = signed_in.get("/dashboard/").get_data(as_text=True)
    assert 'id="requests">3<' in overview
    apps = signed_in.get("/dashboard/apps").get_data(as_text=True)
    assert 'data-app="shop"' in apps and 'data-requests="2"' in apps and 'data-requests="1"' in apps
    assert apps.count("<svg") == 6, "three charts per app"
    models = signed_in.get("/dashboard/models").get_data(as_text=True)
    assert 'data-model="test/primary"' in models


def test_keys_created_once_and_revoked_with_csrf(signed_in):
    page = signed_in.get("/dashboard/keys")
    created = signed_in.post(
        "/dashboard/keys", data={"name": "web", "kind": "inference", "csrf_token": csrf_of(page)}
    ).get_data(as_text=True)
    assert 'id="new-key">sk-lunos-' in created
    assert 'id="new-key"' not in signed_in.get("/dashboard/keys").get_data(as_text=True), "shown once"
    assert signed_in.post("/dashboard/keys", data={"name": "no-token"}).status_code == 400
    listing = signed_in.get("/dashboard/keys")
    key_id = re.search(r'data-key="(\d+)"><td>web<', listing.get_data(as_text=True)).group(1)
    revoked = signed_in.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf_token": csrf_of(listing)})
    assert revoked.status_code == 302
    assert f'data-key="{key_id}"><td>web</td><td>inference</td>' in signed_in.get("/dashboard/keys").get_data(
        as_text=True
    )
    assert "revoked" in signed_in.get("/dashboard/keys").get_data(as_text=True)


def test_revoking_the_signed_in_key_ends_the_session(app, signed_in, management_key):
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.name == "ops").values(revoked_at=db.func.now()))
        db.session.commit()
    assert signed_in.get("/dashboard/").status_code == 302


def test_billing_without_stripe_says_so(signed_in):
    page = signed_in.get("/dashboard/billing")
    assert "not configured" in page.get_data(as_text=True)
    response = signed_in.post("/dashboard/billing/checkout", data={"amount_usd": "20", "csrf_token": csrf_of(page)})
    assert response.status_code == 302
    assert "STRIPE_SECRET_KEY" in signed_in.get("/dashboard/billing").get_data(as_text=True)


def test_logout(signed_in):
    page = signed_in.get("/dashboard/")
    signed_in.post("/dashboard/logout", data={"csrf_token": csrf_of(page)})
    assert signed_in.get("/dashboard/").status_code == 302
