"""Property: no body sent to /v1/billing/checkout, /subscribe or /portal is a 5xx (a JSON array,
nesting far too deep, amounts like "1e999999999", any JSON at all)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_fuzz_chat import FUZZ, any_text, assert_clean, body_bytes, either, json_values

amounts = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e999999999", "-0", "NaN", "Infinity", "12.345", "20", " 20 ", "0x14", "²"]),
    any_text,
)
billing_bodies = st.fixed_dictionaries(
    {},
    optional={
        "amount_usd": either(amounts),
        "plan": either(st.sampled_from(["pro", "free", "nope", ""])),
        "return_url": either(st.sampled_from(["https://app.example/b", "https://evil.example@app.example/"])),
        "extra": json_values,
    },
)


def test_no_billing_request_is_a_5xx(billing_client, manager):
    @settings(FUZZ, max_examples=150)
    @given(path=st.sampled_from(["checkout", "subscribe", "portal"]), body=body_bytes(billing_bodies))
    def check(path, body):
        response = billing_client.post(
            f"/v1/billing/{path}", data=body, headers=manager, content_type="application/json"
        )
        assert_clean(response)

    check()


def test_a_body_that_is_not_an_object_is_a_400(billing_client, manager, stripe_fake):
    for path in ("checkout", "subscribe", "portal"):
        response = billing_client.post(
            f"/v1/billing/{path}", data=b"[]", headers=manager, content_type="application/json"
        )
        assert response.status_code == 400, (path, response.get_json())
        assert response.get_json()["error"]["type"] == "invalid_request_error"
    deep = b"[" * 100_000 + b"]" * 100_000
    response = billing_client.post("/v1/billing/portal", data=deep, headers=manager, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert not stripe_fake.calls
