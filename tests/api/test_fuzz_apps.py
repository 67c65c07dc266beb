"""Property: no request to /v1/apps (bodies, app ids in the path) is a 5xx."""

from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_fuzz_chat import FUZZ, any_text, assert_clean, body_bytes, either, json_values, url_text

app_bodies = st.fixed_dictionaries({}, optional={"name": either(any_text), "extra": json_values})
app_ids = st.one_of(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True), url_text, st.just("x" * 65))


def test_no_app_request_is_a_5xx(client, manager):
    @settings(FUZZ, max_examples=150)
    @given(method=st.sampled_from(["put", "put", "delete"]), app_id=app_ids, body=body_bytes(app_bodies))
    def check(method, app_id, body):
        path = f"/v1/apps/{quote(app_id, safe='')}"
        if method == "put":
            assert_clean(client.put(path, data=body, headers=manager, content_type="application/json"))
        else:
            assert_clean(client.delete(path, headers=manager))
        assert client.get("/v1/apps", headers=manager).status_code == 200

    check()
