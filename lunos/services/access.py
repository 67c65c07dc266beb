"""What a caller may do: its effective plan, the models that plan allows, its rate quota."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lunos.errors import InvalidSubscriptionPlan, SubscriptionRequired
from lunos.plans import Plan, Plans
from lunos.services.limits import Quota

if TYPE_CHECKING:
    from lunos.catalog import ModelEntry
    from lunos.services.keys import KeyIdentity

# Stripe subscription states in which the subscribed plan is not in force: never paid for yet
# (incomplete), paused, or ended.
ENDED = frozenset({"canceled", "unpaid", "incomplete", "incomplete_expired", "paused"})


@dataclass(frozen=True)
class Caller:
    key: KeyIdentity
    app_id: str
    plan: Plan
    quota: Quota

    @property
    def key_id(self) -> int:
        return self.key.id

    @property
    def account_id(self) -> int:
        return self.key.account_id


def effective_plan(plans: Plans, key: KeyIdentity, grace_days: float, now: datetime | None = None) -> Plan:
    """The account's plan; the default plan once its subscription ended or stayed past due
    longer than the grace period."""
    now = now or datetime.now(UTC)
    if key.subscription_status in ENDED:
        return plans.get(plans.default)
    if (
        key.subscription_status == "past_due"
        and key.past_due_since is not None
        and now - key.past_due_since > timedelta(days=grace_days)
    ):
        return plans.get(plans.default)
    return plans.get(key.plan or plans.default)


def resolve_caller(key: KeyIdentity, app_id: str, plans: Plans, grace_days: float) -> Caller:
    plan = effective_plan(plans, key, grace_days)
    return Caller(
        key=key,
        app_id=app_id,
        plan=plan,
        quota=Quota(key.requests_per_minute or plan.requests_per_minute, plan.tokens_per_minute),
    )


def check_plan(plan: Plan, models: Iterable[ModelEntry]) -> None:
    if not plan.api_access:
        raise SubscriptionRequired(
            f"The '{plan.name}' plan does not include API access: subscribe to a plan "
            "that does (POST /v1/billing/subscribe)."
        )
    for model in models:
        if not plan.allows(model.id):
            raise InvalidSubscriptionPlan(
                f"The '{plan.name}' plan does not include the model '{model.id}'.", param="model"
            )
