"""Plans file: a bad one stops start-up naming the file, the plan and the problem."""

import pytest
import sqlalchemy as sa

from lunos.config import SHIPPED_PLANS
from lunos.extensions import db
from lunos.models import Account, ApiKey
from lunos.plans import PlansError, load_plans
from lunos.services import keys
from tests.api.test_chat import chat
from tests.conftest import set_plan

GOOD = """
default_plan = "free"
[plans.free]
monthly_credits_usd = 0
requests_per_minute = 10
tokens_per_minute = 1000
models = ["lunos/*", "openai/gpt-4o-mini"]
api_access = true
"""


def test_shipped_plans_load():
    plans = load_plans(SHIPPED_PLANS)
    assert plans.get(None).name == "free" and plans.get("pro").monthly_credits_micros == 50_000_000


def test_models_are_glob_patterns(tmp_path):
    path = tmp_path / "plans.toml"
    path.write_text(GOOD)
    free = load_plans(path).get("free")
    assert free.allows("lunos/echo") and free.allows("openai/gpt-4o-mini")
    assert not free.allows("openai/gpt-4o")


@pytest.mark.parametrize(
    "change, words",
    [
        (("requests_per_minute = 10", "requests_per_minute = -1"), ["[plans.free]", "requests_per_minute"]),
        (("tokens_per_minute = 1000", "tokens_per_minute = 2.5"), ["[plans.free]", "tokens_per_minute"]),
        (('default_plan = "free"', 'default_plan = "gold"'), ["default_plan 'gold'"]),
        (("api_access = true", 'api_access = "yes"'), ["api_access"]),
        (("monthly_credits_usd = 0", "monthly_credits_usd = -1"), ["monthly_credits_usd"]),
        (("[plans.free]", "[plans.free"), ["invalid TOML"]),
    ],
)
def test_bad_plans_name_file_plan_and_problem(tmp_path, change, words):
    path = tmp_path / "plans.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(PlansError) as failed:
        load_plans(path)
    assert str(path) in str(failed.value)
    for word in words:
        assert word in str(failed.value)


def test_a_limit_left_out_or_zero_is_no_limit(tmp_path):
    path = tmp_path / "plans.toml"
    path.write_text(
        GOOD.replace("requests_per_minute = 10\n", "").replace("tokens_per_minute = 1000", "tokens_per_minute = 0")
    )
    free = load_plans(path).get("free")
    assert (free.requests_per_minute, free.tokens_per_minute) == (None, None)


def test_the_shipped_default_plan_allows_any_catalog_and_generous_limits():
    default = load_plans(SHIPPED_PLANS).get(None)
    assert default.allows("mycorp/llama-3-70b") and default.allows("openai/text-embedding-3-small")
    assert default.requests_per_minute >= 600 and default.tokens_per_minute >= 1_000_000


def test_an_own_catalog_works_on_the_shipped_plans(make_app, account):
    app = make_app(PLANS=str(SHIPPED_PLANS))  # the test catalog's ids are none of the shipped ones
    client = app.test_client()
    with app.app_context():
        _key, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"])
    response = chat(client, {"Authorization": f"Bearer {secret}"}, model="test/primary")
    assert response.status_code == 200, response.get_json()
    assert response.headers["x-ratelimit-limit-requests"] == "600"


def test_no_limit_means_no_headers_and_no_refusal(app, client, auth, account):
    set_plan(app, account, "unlimited")
    responses = [chat(client, auth) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert not [name for name in responses[-1].headers.keys() if name.lower().startswith("x-ratelimit-")]
    rate_limit = client.get("/v1/key", headers=auth).get_json()["data"]["rate_limit"]
    assert rate_limit == {"requests_per_minute": None, "tokens_per_minute": None}


def test_only_the_limited_pair_of_headers_is_sent(app, client, auth, account):
    set_plan(app, account, "tokens-only")  # 20 tokens a minute, any number of requests
    first = chat(client, auth, model="test/primary")  # 18 tokens
    assert first.headers["x-ratelimit-limit-tokens"] == "20"
    assert "x-ratelimit-limit-requests" not in first.headers
    assert chat(client, auth, model="test/primary").status_code == 200  # 18 < 20: still room
    limited = chat(client, auth, model="test/primary")
    assert limited.status_code == 429 and "x-ratelimit-remaining-requests" not in limited.headers
    assert limited.headers["x-ratelimit-remaining-tokens"] == "0"
    assert client.get("/v1/key", headers=auth).get_json()["data"]["rate_limit"] == {
        "requests_per_minute": None,
        "tokens_per_minute": 20,
    }


def test_a_key_limit_applies_on_a_plan_without_one(app, client, auth, account):
    set_plan(app, account, "unlimited")
    with app.app_context():
        db.session.execute(sa.update(ApiKey).values(requests_per_minute=1))
        db.session.commit()
    ok, limited = chat(client, auth), chat(client, auth)
    assert (ok.status_code, limited.status_code) == (200, 429)
    assert ok.headers["x-ratelimit-limit-requests"] == "1" and "x-ratelimit-limit-tokens" not in ok.headers
