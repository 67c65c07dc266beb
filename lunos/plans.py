"""Plans: monthly (and trial) credits, rate limits, the models they allow, and their Stripe price.

Read from a TOML file (LUNOS_PLANS); a bad file stops start-up naming the file, plan and problem.
A rate limit left out (or 0) is no limit: None here.
"""

from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from lunos.fields import read_toml
from lunos.money import usd_to_micros


class PlansError(Exception):
    pass


@dataclass(frozen=True)
class Plan:
    name: str
    monthly_credits_micros: int
    requests_per_minute: int | None  # None: no limit
    tokens_per_minute: int | None
    models: tuple
    api_access: bool
    stripe_price_id: str
    trial_credits_micros: int = 0  # granted by a $0 (trial) invoice instead of the monthly credits

    def allows(self, model_id):
        return any(fnmatchcase(model_id, pattern) for pattern in self.models)


@dataclass
class Plans:
    default: str
    plans: dict

    def get(self, name):
        return self.plans.get(name) or self.plans[self.default]

    def by_price(self, price_id):
        return next((p for p in self.plans.values() if price_id and p.stripe_price_id == price_id), None)


def _field(table, key, kind, where):
    if key not in table:
        raise PlansError(f"{where}: missing '{key}'")
    value = table[key]
    if kind is Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PlansError(f"{where}: '{key}' must be a non-negative number, got {value!r}")
        return Decimal(str(value))
    if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value <= 0)):
        raise PlansError(
            f"{where}: '{key}' must be {'a positive ' if kind is int else ''}{kind.__name__}, got {value!r}"
        )
    return value


def _limit(table, key, where) -> int | None:
    """A per-minute limit: a positive integer, or absent or 0 for no limit (None)."""
    value = table.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlansError(f"{where}: '{key}' must be a positive integer, or 0 (or left out) for no limit, got {value!r}")
    return value or None


def load_plans(path):
    where = f"plans {path}"
    data = read_toml(path, where, PlansError)
    plans = {}
    for name, table in (data.get("plans") or {}).items():
        at = f"{where} [plans.{name}]"
        models = _field(table, "models", list, at)
        plans[name] = Plan(
            name=name,
            monthly_credits_micros=usd_to_micros(_field(table, "monthly_credits_usd", Decimal, at)),
            requests_per_minute=_limit(table, "requests_per_minute", at),
            tokens_per_minute=_limit(table, "tokens_per_minute", at),
            models=tuple(str(m) for m in models),
            api_access=_field(table, "api_access", bool, at),
            stripe_price_id=str(table.get("stripe_price_id") or ""),
            trial_credits_micros=usd_to_micros(
                _field({"trial_credits_usd": 0, **table}, "trial_credits_usd", Decimal, at)
            ),
        )
    if not plans:
        raise PlansError(f"{where}: no [plans.*] defined")
    default = data.get("default_plan")
    if default not in plans:
        raise PlansError(f"{where}: default_plan {default!r} is not a plan in the file")
    prices = [p.stripe_price_id for p in plans.values() if p.stripe_price_id]
    if len(prices) != len(set(prices)):
        raise PlansError(f"{where}: two plans share a stripe_price_id")
    return Plans(default=default, plans=plans)
