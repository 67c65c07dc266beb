"""Plans file: a bad one stops start-up naming the file, the plan and the problem."""
import pytest

from lunos.config import SHIPPED_PLANS
from lunos.plans import PlansError, load_plans

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


@pytest.mark.parametrize("change, words", [
    (("requests_per_minute = 10", "requests_per_minute = 0"), ["[plans.free]", "requests_per_minute"]),
    (('default_plan = "free"', 'default_plan = "gold"'), ["default_plan 'gold'"]),
    (("api_access = true", 'api_access = "yes"'), ["api_access"]),
    (("monthly_credits_usd = 0", "monthly_credits_usd = -1"), ["monthly_credits_usd"]),
    (("[plans.free]", "[plans.free"), ["invalid TOML"]),
])
def test_bad_plans_name_file_plan_and_problem(tmp_path, change, words):
    path = tmp_path / "plans.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(PlansError) as failed:
        load_plans(path)
    assert str(path) in str(failed.value)
    for word in words:
        assert word in str(failed.value)
