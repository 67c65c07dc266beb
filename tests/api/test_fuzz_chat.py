"""Property: no chat completion body, however malformed, is a 5xx, and whatever a request did,
the account has nothing left reserved and its cached balance equals its ledger.

The bodies mix valid values with arbitrary JSON in every known field (and unknown ones),
integers beyond 64 bits, lone surrogates, NUL, deep nesting and bytes that are not JSON; the
models are the echo model and the loopback upstreams (OpenAI-compatible and Anthropic), streamed
or not. The shared strategies live here; the other fuzz tests import them.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import money

# Deterministic for CI: a fixed derivation of examples, no example database, no deadline (the
# machine is shared), and a bounded count per test.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

EDGE_INTS = [
    0,
    1,
    -1,
    2**31 - 1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    10**30,
    -(10**30),
]
EDGE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udc00x",
    "\ud83d\ude00",
    "\u00b2",
    "\u0661\u0662",
    "9" * 25,
    "1e999999999",
    "-1e400",
    "NaN",
    "Infinity",
    "-0",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-14:00",
    "2020-01-01",
    "null",
    "[]",
    "{}",
    "x" * 300,
    "%00",
    "../",
    "\\u0000",
]

any_text = st.one_of(st.text(max_size=20), st.text(st.characters(codec=None), max_size=8), st.sampled_from(EDGE_TEXTS))
# Text a URL or a form can carry (no lone surrogates: they cannot be percent-encoded).
url_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    st.sampled_from([t for t in EDGE_TEXTS if t.isascii() or t == "\u00b2"]),
)
# What a header can carry.
header_text = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=70),
)
any_int = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(), st.sampled_from(EDGE_INTS))
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


def _json(ints: st.SearchStrategy) -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), ints, finite_floats, any_text)
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
        max_leaves=10,
    )


json_values = _json(any_int)
in_range_json = _json(st.integers(-(2**63), 2**63 - 1))  # what a valid body may pass through


def either(valid) -> st.SearchStrategy:
    """Mostly ``valid``, sometimes any JSON value at all."""
    return st.one_of(valid, valid, json_values)


def body_bytes(bodies: st.SearchStrategy) -> st.SearchStrategy:
    """JSON text of ``bodies`` (lone surrogates escaped, as JavaScript sends them), now and then
    cut short, nested far too deep, or bytes that are not JSON at all."""
    encoded = bodies.map(lambda body: json.dumps(body).encode())
    deep = st.integers(100, 3000).map(
        lambda n: b'{"messages": [{"role": "user", "content": "hi"}], "m": ' + b"[" * n + b"]" * n + b"}"
    )
    return st.one_of(
        encoded,
        encoded,
        encoded,
        encoded,
        st.tuples(encoded, st.integers(0, 60)).map(lambda pair: pair[0][: pair[1]]),
        deep,
        st.binary(max_size=40),
    )


def assert_clean(response) -> None:
    """Not a 5xx, and an error is OpenAI-shaped."""
    assert response.status_code < 500, response.get_data(as_text=True)[:1000]
    if response.status_code >= 400:
        error = response.get_json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


MODELS = ["test/echo", "test/primary", "test/claude", "test/backup", "primary-alias"]
ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
PART_TYPES = ["text", "image_url", "input_audio", "file", "refusal", "video"]


def with_fault(bodies: st.SearchStrategy, where: st.SearchStrategy) -> st.SearchStrategy:
    """A body of ``bodies`` with the value at one path of ``where`` (a tuple of keys and
    indexes) replaced by any JSON value: one fault in an otherwise valid request."""

    def put(args):
        body, path, value = args
        target = body
        for step in path[:-1]:
            try:
                target = target[step]
            except (KeyError, IndexError, TypeError):
                return body
        if isinstance(target, dict) or (
            isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target)
        ):
            target[path[-1]] = value
        return body

    return st.tuples(bodies, where, json_values).map(put)


# --- valid requests (with what OpenAI accepts and an adapter may refuse) ------------------------

text_parts = st.fixed_dictionaries({"type": st.just("text"), "text": any_text})
parts = st.one_of(
    text_parts,
    text_parts,
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": st.sampled_from(["https://x/y.png", "data:image/png;base64,AAAA", "data:", ""])},
                optional={"detail": st.sampled_from(["low", "high", "auto"])},
            ),
        }
    ),
    st.just({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
    st.just({"type": "file", "file": {"file_id": "file-1"}}),
)
nullable_text = st.one_of(st.none(), any_text)
arguments = st.one_of(
    any_text,
    json_values.map(json.dumps),
    st.integers(1, 400).map(lambda n: "[" * n + "]" * n),
    st.just('{"big": 100000000000000000000000}'),
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": any_text,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": any_text, "arguments": arguments}),
        }
    ),
    min_size=1,
    max_size=2,
)
valid_messages = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "developer"]),
            "content": st.one_of(any_text, st.lists(parts, min_size=1, max_size=3)),
        },
        optional={"name": nullable_text, "tool_calls": st.none(), "refusal": st.none()},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.one_of(nullable_text, st.lists(text_parts, max_size=2))},
        optional={
            "tool_calls": st.one_of(st.none(), tool_calls),
            "refusal": nullable_text,
            "function_call": st.none(),
            "audio": st.none(),
            "name": st.none(),
            "annotations": st.just([]),
        },
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "content": any_text, "tool_call_id": st.text(min_size=1, max_size=8)},
        optional={"name": st.none()},
    ),
)
function_tools = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True)},
            optional={
                "description": nullable_text,
                "parameters": st.just({"type": "object", "properties": {}}),
                "strict": st.booleans(),
            },
        ),
    }
)
tools = st.one_of(function_tools, function_tools, st.just({"type": "custom", "custom": {"name": "grammar"}}))
tool_choices = st.one_of(
    st.sampled_from(["none", "auto", "required"]),
    st.just({"type": "function", "function": {"name": "f"}}),
    st.just({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}),
)
in_range_ints = st.integers(-(2**63), 2**63 - 1)
valid_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS), "messages": st.lists(valid_messages, min_size=1, max_size=4)},
    optional={
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
        "max_tokens": st.integers(1, 50),
        "max_completion_tokens": st.integers(1, 2**63 - 1),
        "n": st.integers(1, 3),
        "seed": in_range_ints,
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(any_text, st.lists(any_text, max_size=4)),
        "tools": st.lists(tools, max_size=3),
        "tool_choice": tool_choices,
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
        "user": st.text(max_size=20),
        "fallback_model": st.sampled_from(MODELS),
        "models": st.lists(st.sampled_from(MODELS), max_size=3),
        "logit_bias": st.dictionaries(st.sampled_from(["1", "50256"]), in_range_ints, max_size=2),
        "metadata": in_range_json,
        "x_unknown": in_range_json,
    },
)

# --- one fault, or anything ------------------------------------------------------------------

BODY_FIELDS = [
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    "fallback_model",
    "models",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call", "audio"]
fault_paths = st.one_of(
    st.tuples(st.sampled_from(BODY_FIELDS)),
    st.tuples(st.just("messages"), st.integers(0, 3), st.sampled_from(MESSAGE_FIELDS)),
    st.tuples(
        st.just("messages"),
        st.integers(0, 3),
        st.just("content"),
        st.integers(0, 2),
        st.sampled_from(["type", "text", "image_url", "input_audio", "file"]),
    ),
    st.tuples(
        st.just("messages"),
        st.integers(0, 3),
        st.just("tool_calls"),
        st.integers(0, 1),
        st.sampled_from(["id", "type", "function"]),
    ),
    st.tuples(st.just("tools"), st.integers(0, 2), st.sampled_from(["type", "function", "custom"])),
    st.tuples(st.just("tool_choice"), st.sampled_from(["type", "function"])),
)


def _anything_part():
    return st.fixed_dictionaries(
        {"type": either(st.sampled_from(PART_TYPES))},
        optional={
            "text": either(any_text),
            "image_url": either(st.fixed_dictionaries({"url": either(any_text)})),
            "input_audio": json_values,
            "file": json_values,
        },
    )


anything_bodies = st.fixed_dictionaries(
    {
        "messages": either(
            st.lists(
                st.fixed_dictionaries(
                    {"role": either(st.sampled_from(ROLES))},
                    optional={name: json_values for name in MESSAGE_FIELDS[1:]}
                    | {"content": st.one_of(any_text, st.lists(_anything_part(), max_size=3), json_values)},
                ),
                max_size=4,
            )
        )
    },
    optional={name: json_values for name in BODY_FIELDS[2:]} | {"model": either(st.sampled_from(MODELS))},
)
chat_bodies = st.one_of(
    valid_bodies,
    valid_bodies,
    with_fault(valid_bodies, fault_paths),
    with_fault(valid_bodies, fault_paths),
    anything_bodies,
)


def test_no_chat_body_is_a_5xx_and_nothing_stays_reserved(client, auth, app, account):
    @settings(FUZZ, max_examples=250)
    @given(body=body_bytes(chat_bodies), x_api_key=st.booleans(), app_id=st.one_of(st.none(), header_text))
    def check(body, x_api_key, app_id):
        headers = (
            {"X-API-Key": auth["Authorization"].removeprefix("Bearer "), "Authorization": "Bearer placeholder"}
            if x_api_key
            else dict(auth)
        )
        if app_id is not None:
            headers["X-App-ID"] = app_id
        response = client.post(
            "/v1/chat/completions", data=body, headers=headers, content_type="application/json", buffered=True
        )
        assert_clean(response)
        if response.status_code == 200 and response.mimetype == "text/event-stream":
            text = response.get_data(as_text=True)
            assert text.rstrip().endswith("data: [DONE]") or '"error"' in text
        balance, ledger, reserved = money(app, account)
        assert reserved == 0 and balance == ledger

    check()


def _replace_lone_surrogates(value):
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


@settings(FUZZ, max_examples=300)
@given(value=json_values)
def test_the_parser_reads_back_what_it_accepts(value):
    """Within bounds, a value comes back as it was sent (lone surrogates as U+FFFD); beyond them,
    the answer is an InvalidRequest, never another error."""
    from lunos.errors import InvalidRequest
    from lunos.schemas.bounded_json import INT64_MAX, INT64_MIN, loads

    def in_range(v):
        if type(v) is int:
            return INT64_MIN <= v <= INT64_MAX
        if isinstance(v, list):
            return all(in_range(item) for item in v)
        if isinstance(v, dict):
            return all(in_range(item) for item in v.values())
        return True

    text = json.dumps(value).encode()
    if in_range(value):
        assert loads(text, max_depth=16) == _replace_lone_surrogates(value)
    else:
        with pytest.raises(InvalidRequest):
            loads(text, max_depth=16)
