"""Reading usage back: one generation's stats, a key's spend."""

from sqlalchemy import func, select

from lunos.errors import NotFound
from lunos.extensions import db
from lunos.models import UsageEvent
from lunos.money import usd
from lunos.services.keys import as_utc

COMPLETION_PREFIX = "chatcmpl-"


def summary(event: UsageEvent) -> dict:
    """What every view of a usage event shows."""
    return {
        "id": COMPLETION_PREFIX + event.id,
        "created_at": as_utc(event.created_at).isoformat(),  # SQLite gives its times back naive
        "model": event.model,
        "requested_model": event.requested_model,
        "provider": event.provider,
        "app_id": event.app_id,
        "stream": event.stream,
        "status": event.status,
        "http_status": event.http_status,
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "cost": usd(event.cost_micros),
        "latency_ms": event.latency_ms,
        "ttft_ms": event.ttft_ms,
    }


def generation(account_id: int, generation_id: str | None, key_id: int | None = None) -> dict:
    """One request's stats, by the id its answer carried; only the caller's own account, and
    only ``key_id``'s requests when given (an inference key sees its own)."""
    event_id = (generation_id or "").removeprefix(COMPLETION_PREFIX)
    event = db.session.get(UsageEvent, event_id) if event_id else None
    if event is None or event.account_id != account_id or (key_id is not None and event.key_id != key_id):
        raise NotFound(f"No generation with id {generation_id!r}.", param="id")
    return {
        **summary(event),
        "error": event.error,
        "cached_tokens": event.cached_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "usage_estimated": event.usage_estimated,
        "unbilled": usd(event.unbilled_micros),
        "attempts": event.attempts,
    }


def key_spend_micros(key_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(UsageEvent.cost_micros - UsageEvent.unbilled_micros), 0)).where(
                UsageEvent.key_id == key_id
            )
        )
    )
