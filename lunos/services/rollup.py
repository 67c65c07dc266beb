"""The hourly usage rollup: UPSERTs in the settlement's transaction."""

import bisect
from collections.abc import Sequence

from sqlalchemy.dialects import postgresql, sqlite

from lunos.models.usage import LATENCY_BUCKETS_MS, UsageHourly
from lunos.services.prepared import Prepared, Transaction

_BOUNDS = LATENCY_BUCKETS_MS[:-1]
LATENCY_COLUMNS = tuple(f"lat_{i}" for i in range(len(LATENCY_BUCKETS_MS)))
_SUMMED = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_micros", *LATENCY_COLUMNS)
_KEY = ("account_id", "hour", "app_id", "model", "key_id")
_upserts = {}


def latency_bucket(latency_ms: float) -> int:
    return bisect.bisect_left(_BOUNDS, latency_ms)


def _upsert(dialect):
    """INSERT ... ON CONFLICT DO UPDATE adding to the counters, built once per dialect."""
    if dialect not in _upserts:
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
        statement = insert(UsageHourly)
        _upserts[dialect] = Prepared(
            statement.on_conflict_do_update(
                index_elements=list(_KEY),
                set_={name: getattr(UsageHourly, name) + getattr(statement.excluded, name) for name in _SUMMED},
            ),
            columns=[*_KEY, *_SUMMED],
        )
    return _upserts[dialect]


def roll_up(tx: Transaction, events: list[dict]) -> None:
    """Add ``events`` to the rows of the hours they were created in, in the settlement's
    transaction ``tx`` (a prepared.Transaction): one row per (account, hour, app, model, key),
    summed here first, so a batch of settlements upserts each row once."""
    rows = {}
    for event in events:
        hour = event["created_at"].replace(minute=0, second=0, microsecond=0)
        key = (
            event["account_id"],
            hour,
            event["app_id"],
            event["model"] or event["requested_model"] or "",
            event["key_id"] or 0,
        )
        row = rows.get(key)
        if row is None:
            row = rows[key] = dict(zip(_KEY, key), **{name: 0 for name in _SUMMED})
        row["requests"] += 1
        row["errors"] += int(event["status"] != "ok")
        row["prompt_tokens"] += event["prompt_tokens"]
        row["completion_tokens"] += event["completion_tokens"]
        row["cost_micros"] += event["cost_micros"]
        row[LATENCY_COLUMNS[latency_bucket(event["latency_ms"])]] += 1
    tx.run_many(_upsert(tx.dialect.name), list(rows.values()))


def percentile(bucket_counts: Sequence[int], fraction: float) -> float | None:
    """Estimate a latency percentile from summed histogram counts, interpolating in its bucket."""
    total = sum(bucket_counts)
    if not total:
        return None
    rank, seen = fraction * total, 0
    for index, count in enumerate(bucket_counts):
        if count and seen + count >= rank:
            low = LATENCY_BUCKETS_MS[index - 1] if index else 0
            high = LATENCY_BUCKETS_MS[index] or low * 2  # the open bucket: up to twice its floor
            return low + (high - low) * (rank - seen) / count
        seen += count
    return None
