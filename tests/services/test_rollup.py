"""The hourly rollup agrees with the raw events, and its percentile estimate is sound."""

import pytest
from sqlalchemy import func, select

from lunos.extensions import db
from lunos.models import UsageEvent, UsageHourly
from lunos.services.rollup import LATENCY_COLUMNS, latency_bucket, percentile
from tests.api.test_chat import chat
from tests.upstream import Reply


def test_latency_buckets_are_upper_bound_inclusive():
    assert [latency_bucket(ms) for ms in (0, 25, 26, 50, 59_999, 60_000, 60_001, 10**9)] == [0, 0, 1, 1, 14, 14, 15, 15]


def test_percentile_interpolates_within_its_bucket():
    counts = [0] * len(LATENCY_COLUMNS)
    counts[2] = 10  # ten requests between 50 and 100 ms
    assert percentile(counts, 0.5) == pytest.approx(75)
    counts[7] = 10  # ten more between 750 and 1000 ms
    assert 50 <= percentile(counts, 0.5) <= 100 and 750 <= percentile(counts, 0.95) <= 1000
    assert percentile([0] * len(LATENCY_COLUMNS), 0.5) is None


def test_rollup_matches_raw_events(app, client, auth, upstream):
    for app_id in ("a", "a", "b"):
        chat(client, {**auth, "X-App-ID": app_id}, model="test/primary")
    upstream.script("primary", Reply(status=500))
    chat(client, {**auth, "X-App-ID": "b"}, model="test/primary")
    with app.app_context():
        raw = dict(db.session.execute(select(UsageEvent.app_id, func.count()).group_by(UsageEvent.app_id)).all())
        rolled = dict(
            db.session.execute(
                select(UsageHourly.app_id, func.sum(UsageHourly.requests)).group_by(UsageHourly.app_id)
            ).all()
        )
        errors = db.session.scalar(select(func.sum(UsageHourly.errors)))
        tokens = db.session.execute(select(func.sum(UsageEvent.prompt_tokens), func.sum(UsageEvent.cost_micros))).one()
        rolled_tokens = db.session.execute(
            select(func.sum(UsageHourly.prompt_tokens), func.sum(UsageHourly.cost_micros))
        ).one()
    assert raw == {k: int(v) for k, v in rolled.items()} == {"a": 2, "b": 2}
    assert errors == 1 and tuple(tokens) == tuple(rolled_tokens)
