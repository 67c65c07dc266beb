import re

import pytest

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import keys


@pytest.fixture
def management_key(app, account):
    with app.app_context():
        _, secret = keys.create_key(
            db.session.get(Account, account), app.config["SECRET_KEY"], name="ops", kind=MANAGEMENT
        )
    return secret


def csrf_of(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


@pytest.fixture
def signed_in(client, management_key):
    page = client.get("/dashboard/login")
    response = client.post("/dashboard/login", data={"key": management_key, "csrf_token": csrf_of(page)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
