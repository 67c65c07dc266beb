"""Property: no request to /v1/keys (bodies, ids in the path) is a 5xx."""

from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from lunos.extensions import db
from lunos.models import Account
from lunos.models.api_key import MANAGEMENT
from lunos.services import keys
from tests.api.test_fuzz_chat import FUZZ, any_text, assert_clean, body_bytes, either, json_values, url_text

moments = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda m: m.isoformat()),
    st.sampled_from(
        [
            "2999-01-01T00:00:00Z",
            "2020-01-01T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "2999-01-01",
            "tomorrow",
        ]
    ),
)
amounts = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False),
    st.sampled_from(["1e999999999", "-1", "0.000001", "NaN", "5"]),
)
key_bodies = st.fixed_dictionaries(
    {},
    optional={
        "name": either(any_text),
        "kind": either(st.sampled_from(["inference", "management", "root"])),
        "expires_at": either(st.one_of(st.none(), moments)),
        "disabled": either(st.booleans()),
        "requests_per_minute": either(st.one_of(st.none(), st.integers(1, 2**40))),
        "allowed_models": either(st.one_of(st.none(), st.lists(any_text, max_size=3))),
        "allowed_apps": either(st.one_of(st.none(), st.lists(st.one_of(any_text, st.just("shop")), max_size=3))),
        "credit_limit_usd": either(st.one_of(st.none(), amounts)),
        "credit_limit_reset": either(st.one_of(st.none(), st.sampled_from(["daily", "weekly", "monthly", "hourly"]))),
        "colour": json_values,
    },
)
# Path ids that are no row of this test (and so never the management key the test uses).
foreign_ids = st.one_of(
    st.integers(min_value=10**9).map(str),
    st.integers(max_value=-1).map(str),
    st.sampled_from(["\u00b2", "0", "1e3", str(2**64), "9" * 40]),
    url_text.filter(lambda text: not text.strip().isdigit()),
)


def test_no_key_request_is_a_5xx(app, client, account):
    with app.app_context():
        _, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"], kind=MANAGEMENT)
    headers = {"Authorization": f"Bearer {secret}"}
    target = client.post("/v1/keys", headers=headers, json={"name": "target"}).get_json()["id"]

    @settings(FUZZ, max_examples=200)
    @given(
        action=st.sampled_from(["create", "patch", "patch-foreign", "get", "delete"]),
        body=body_bytes(key_bodies),
        segment=foreign_ids,
    )
    def check(action, body, segment):
        path = f"/v1/keys/{quote(segment, safe='')}"
        if action == "create":
            response = client.post("/v1/keys", data=body, headers=headers, content_type="application/json")
            assert_clean(response)
            if response.status_code == 201:
                created = response.get_json()["id"]
                assert_clean(
                    client.patch(f"/v1/keys/{created}", data=body, headers=headers, content_type="application/json")
                )
                assert_clean(client.delete(f"/v1/keys/{created}", headers=headers))
        elif action == "patch":
            assert_clean(
                client.patch(f"/v1/keys/{target}", data=body, headers=headers, content_type="application/json")
            )
        elif action == "patch-foreign":
            assert_clean(client.patch(path, data=body, headers=headers, content_type="application/json"))
        elif action == "get":
            assert_clean(client.get(path, headers=headers))
        else:
            assert_clean(client.delete(path, headers=headers))
        assert client.get("/v1/keys", headers=headers).status_code == 200

    check()
