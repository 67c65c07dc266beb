"""Property: no query of /v1/usage, /v1/usage/events or /v1/generation is a 5xx."""

import base64
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_chat import chat
from tests.api.test_fuzz_chat import FUZZ, assert_clean, url_text

moments = st.one_of(
    st.datetimes().map(lambda m: m.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda m: m.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "2026-01-01Z", "1969-12-31"]),
)
forged_cursors = st.tuples(st.one_of(moments, url_text), url_text).map(
    lambda pair: base64.urlsafe_b64encode(f"{pair[0]}|{pair[1]}".encode()).decode().rstrip("=")
)


def either(valid):
    return st.one_of(valid, valid, url_text)


query_args = st.fixed_dictionaries(
    {},
    optional={
        "from": either(moments),
        "to": either(moments),
        "group_by": either(
            st.lists(st.sampled_from(["app", "model", "key", "day", "hour", "week"]), max_size=3).map(",".join)
        ),
        "app": either(st.sampled_from(["shop", "unknown"])),
        "model": either(st.sampled_from(["test/echo"])),
        "key": either(st.one_of(st.integers().map(str), st.sampled_from(["\u00b2", str(2**64), "1"]))),
        "format": either(st.just("csv")),
        "limit": either(st.integers().map(str)),
        "cursor": either(forged_cursors),
        "id": either(st.sampled_from(["chatcmpl-", "chatcmpl-x" * 20])),
    },
)


def test_no_usage_query_is_a_5xx(client, auth):
    for app_id in ("shop", "crm"):
        assert chat(client, {**auth, "X-App-ID": app_id}).status_code == 200

    @settings(FUZZ, max_examples=200)
    @given(path=st.sampled_from(["/v1/usage", "/v1/usage/events", "/v1/generation"]), args=query_args)
    def check(path, args):
        response = client.get(f"{path}?{urlencode(args)}", headers=auth)
        assert_clean(response)

    check()
