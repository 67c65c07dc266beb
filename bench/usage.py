"""Usage analytics at scale, on PostgreSQL: python bench/usage.py [--database-url URL] [--events N]

Generates N usage events (default 1,000,000) for one account over 30 days, 20 apps and 5 models,
in a schema of its own, then times the 30-day per-app, per-day aggregate (GET /v1/usage?group_by=app,day)
that the dashboard runs, five times, and prints the median and the slowest.
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import sqlalchemy as sa
from flask_migrate import upgrade

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))  # run from anywhere

from lunos import create_app
from lunos.extensions import db
from lunos.models.usage import LATENCY_BUCKETS_MS
from lunos.services import accounts, analytics, keys
from lunos.services.rollup import LATENCY_COLUMNS

SCHEMA = "lunos_usage_bench"

GENERATE = """
INSERT INTO usage_events (id, account_id, key_id, app_id, requested_model, model, provider, stream, status,
                          http_status, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                          usage_estimated, cost_micros, unbilled_micros, latency_ms, ttft_ms, attempts, created_at)
SELECT md5(i::text), :account, :key, 'app-' || (i % 20), 'model-' || (i % 5), 'model-' || (i % 5), 'bench',
       i % 3 = 0, CASE WHEN i % 50 = 0 THEN 'upstream_error' ELSE 'ok' END, CASE WHEN i % 50 = 0 THEN 502 ELSE 200 END,
       100 + i % 900, 20 + i % 300, 0, 0, false, 50 + i % 1000, 0, 100 + (i::bigint * 7919) % 4000, 80, '[]',
       :end - (i % (30 * 24 * 3600)) * interval '1 second'
FROM generate_series(1, :events) AS i
"""


def rollup_sql():
    """The hourly rollup of the generated events, as settlement would have written it."""
    bounds = LATENCY_BUCKETS_MS[:-1]
    histogram = [f"sum(CASE WHEN latency_ms <= {bounds[0]} THEN 1 ELSE 0 END)"]
    histogram += [
        f"sum(CASE WHEN latency_ms > {low} AND latency_ms <= {high} THEN 1 ELSE 0 END)"
        for low, high in zip(bounds, bounds[1:])
    ]
    histogram.append(f"sum(CASE WHEN latency_ms > {bounds[-1]} THEN 1 ELSE 0 END)")
    return f"""
INSERT INTO usage_hourly (account_id, hour, app_id, model, key_id, requests, errors, prompt_tokens,
                          completion_tokens, cost_micros, {", ".join(LATENCY_COLUMNS)})
SELECT account_id, date_trunc('hour', created_at), app_id, coalesce(model, requested_model), key_id, count(*),
       sum(CASE WHEN status = 'ok' THEN 0 ELSE 1 END), sum(prompt_tokens), sum(completion_tokens), sum(cost_micros),
       {", ".join(histogram)}
FROM usage_events GROUP BY 1, 2, 3, 4, 5
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the schema for a closer look")
    args = parser.parse_args()

    base = sa.create_engine(args.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with base.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    base.dispose()
    separator = "&" if "?" in args.database_url else "?"
    url = f"{args.database_url}{separator}options={quote(f'-csearch_path={SCHEMA}')}"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING"})
    end = datetime.now(UTC)
    with app.app_context():
        upgrade()
        account = accounts.create_account("usage-bench")
        key, _ = keys.create_key(account, "bench")
        started = time.monotonic()
        db.session.execute(sa.text(GENERATE), {"account": account.id, "key": key.id, "end": end, "events": args.events})
        db.session.execute(sa.text(rollup_sql()))
        db.session.commit()
        db.session.execute(sa.text("ANALYZE usage_events"))
        db.session.execute(sa.text("ANALYZE usage_hourly"))
        db.session.commit()
        print(f"generated {args.events:,} events in {time.monotonic() - started:.1f} s")

        usage_filter = analytics.UsageFilter(account.id, end - timedelta(days=30), end + timedelta(seconds=1))
        timings, rows = [], []
        for _ in range(5):
            started = time.perf_counter()
            rows = analytics.aggregate(usage_filter, "app,day")
            timings.append((time.perf_counter() - started) * 1000)
        print(
            f"30-day per-app, per-day aggregate: {len(rows)} rows, {sum(r['requests'] for r in rows):,} requests; "
            f"median {statistics.median(timings):.0f} ms, slowest {max(timings):.0f} ms "
            f"(runs: {', '.join(f'{t:.0f}' for t in timings)})"
        )
    if not args.keep:
        with base.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))


if __name__ == "__main__":
    main()
