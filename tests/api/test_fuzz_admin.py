"""Property: no request to the operator's /admin API (bodies, account ids) is a 5xx, and the
ledger of every account still equals its cached balance."""

from urllib.parse import quote

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from lunos.extensions import db
from lunos.models import Account, LedgerEntry
from tests.api.test_fuzz_chat import FUZZ, any_text, assert_clean, body_bytes, either, json_values, url_text

TOKEN = "admin-fuzz-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
amounts = st.one_of(
    st.integers(-100, 100),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False),
    st.sampled_from(["1e999999999", "-1e400", "0.0000001", "NaN"]),
)
admin_bodies = st.fixed_dictionaries(
    {},
    optional={
        "name": either(any_text),
        "credits_usd": either(amounts),
        "usd": either(amounts),
        "reason": either(any_text),
        "reference": either(st.one_of(any_text, st.integers())),
        "plan": either(st.sampled_from(["free", "pro", "gold"])),
        "extra": json_values,
    },
)
segments = st.one_of(st.integers(-5, 10).map(str), st.sampled_from([str(2**64), "\u00b2", "9" * 40]), url_text)


def _books_balance(app) -> bool:
    with app.app_context():
        ledger = dict(
            db.session.execute(
                sa.select(LedgerEntry.account_id, sa.func.sum(LedgerEntry.amount_micros)).group_by(
                    LedgerEntry.account_id
                )
            ).all()
        )
        return all(
            account.balance_micros == int(ledger.get(account.id, 0))
            for account in db.session.scalars(sa.select(Account))
        )


def test_no_admin_request_is_a_5xx(make_app, account):
    app = make_app(ADMIN_TOKEN=TOKEN)
    client = app.test_client()

    @settings(FUZZ, max_examples=200)
    @given(
        action=st.sampled_from(["create", "get", "credits", "plan", "suspend", "unsuspend"]),
        segment=st.one_of(st.just(str(account)), segments),
        body=body_bytes(admin_bodies),
    )
    def check(action, segment, body):
        base = f"/admin/accounts/{quote(segment, safe='')}"
        json_body = {"data": body, "headers": HEADERS, "content_type": "application/json"}
        if action == "create":
            response = client.post("/admin/accounts", **json_body)
        elif action == "get":
            response = client.get(base, headers=HEADERS)
        elif action == "credits":
            response = client.post(f"{base}/credits", **json_body)
        elif action == "plan":
            response = client.put(f"{base}/plan", **json_body)
        else:
            response = client.post(f"{base}/{action}", headers=HEADERS)
        assert_clean(response)
        assert client.get("/admin/accounts", headers=HEADERS).status_code == 200

    check()
    assert _books_balance(app)
