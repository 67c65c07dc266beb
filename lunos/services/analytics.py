"""Usage analytics for one account: aggregates by app, model, key, day or hour, and raw events.

Aggregates are summed in SQL from the hourly rollup (written with each usage event), so a month
of a busy account is a few thousand rows rather than every event; so their time range has hour
granularity. Latency percentiles are estimated from the rollup's histogram. Raw events are paged
from usage_events on its (account_id, created_at) index.
"""

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select

from lunos.errors import InvalidRequest, PermissionDenied
from lunos.extensions import db
from lunos.models import ApiKey, App, UsageEvent, UsageHourly
from lunos.money import usd
from lunos.schemas import APP_ID, ROW_ID, is_row_id
from lunos.services.rollup import LATENCY_COLUMNS, percentile

GROUPS = ("app", "model", "key", "day", "hour")
MAX_RANGE = timedelta(days=366)
# The moments a query may name: nothing was metered before 1970, and a range's arithmetic
# (30 days back, an hour's start) must stay inside datetime's years 1 to 9999.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
MAX_MODEL_CHARS = 200


@dataclass(frozen=True)
class UsageFilter:
    account_id: int
    start: datetime
    end: datetime
    app: str | None = None
    model: str | None = None
    key: int | None = None

    def _match(self, table, time_column, start):
        clauses = [table.account_id == self.account_id, time_column >= start, time_column < self.end]
        for column, wanted in ((table.app_id, self.app), (table.model, self.model), (table.key_id, self.key)):
            if wanted is not None:
                clauses.append(column == wanted)
        return clauses

    def clauses(self) -> list[ColumnElement[bool]]:
        """The filter on raw usage events."""
        return self._match(UsageEvent, UsageEvent.created_at, self.start)

    def rollup_clauses(self) -> list[ColumnElement[bool]]:
        """The same filter on the hourly rollup: every hour that overlaps [start, end)."""
        return self._match(UsageHourly, UsageHourly.hour, self.hours()[0])

    def hours(self) -> tuple[datetime, datetime]:
        """The whole hours the rollup sums over: from the hour of ``start`` to the end of the hour
        of ``end`` (``end`` itself when it is on the hour)."""
        first, last = (moment.replace(minute=0, second=0, microsecond=0) for moment in (self.start, self.end))
        return first, last if last == self.end else last + timedelta(hours=1)


def parse_time(value: str, param: str) -> datetime:
    """An ISO 8601 date or date-time (UTC when it names no offset), in UTC, from 1970 to 9998."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (AttributeError, ValueError, OverflowError):
        raise InvalidRequest(f"'{param}' must be an ISO 8601 date or date-time, got {value!r}", param=param) from None
    if not EARLIEST <= moment < LATEST:
        raise InvalidRequest(f"'{param}' must be between 1970 and 9998, got {value!r}", param=param)
    return moment


def make_filter(account_id: int, args: Mapping[str, str], now: datetime | None = None) -> UsageFilter:
    """The filter that query ``args`` name (from, to, app, model, key); InvalidRequest naming the
    arg that is wrong."""
    end = parse_time(args["to"], "to") if "to" in args else (now or datetime.now(UTC))
    start = parse_time(args["from"], "from") if "from" in args else max(end - timedelta(days=30), EARLIEST)
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", param="from")
    if end - start > MAX_RANGE:
        raise InvalidRequest("a usage query spans at most 366 days", param="from")
    app, model, key = args.get("app") or None, args.get("model") or None, args.get("key")
    if app is not None and not APP_ID.fullmatch(app):
        raise InvalidRequest("'app' is an app id: 1 to 64 letters, digits, '.', '_' or '-'", param="app")
    if model is not None and (len(model) > MAX_MODEL_CHARS or "\x00" in model):
        raise InvalidRequest(f"'model' is a model id of at most {MAX_MODEL_CHARS} characters", param="model")
    if key is not None and not (ROW_ID.fullmatch(key) and is_row_id(int(key))):
        raise InvalidRequest("'key' is a key id (a number)", param="key")
    return UsageFilter(account_id, start, end, app, model, int(key) if key is not None else None)


def confine_to_key(usage_filter: UsageFilter, key_id: int | None) -> UsageFilter:
    """The filter restricted to one key's requests (``key_id`` None: unrestricted). Without
    ``key=`` the query silently becomes that key's; a ``key=`` naming another key is refused,
    rather than answered with data that is not what was asked for."""
    if key_id is None:
        return usage_filter
    if usage_filter.key is not None and usage_filter.key != key_id:
        raise PermissionDenied(
            "An inference key reads only its own usage: leave out 'key', or use a management "
            "key to read other keys' usage.",
            param="key",
        )
    return replace(usage_filter, key=key_id)


def _bucket(group_by, dialect):
    if group_by in ("day", "hour"):
        if dialect == "postgresql":
            return func.to_char(
                func.date_trunc(group_by, func.timezone("UTC", UsageHourly.hour)),
                "YYYY-MM-DD" if group_by == "day" else 'YYYY-MM-DD"T"HH24:00:00"Z"',
            )
        return func.strftime("%Y-%m-%d" if group_by == "day" else "%Y-%m-%dT%H:00:00Z", UsageHourly.hour)
    return {"app": UsageHourly.app_id, "model": UsageHourly.model, "key": UsageHourly.key_id}[group_by]


def parse_group_by(value: str | None) -> tuple[str, ...]:
    """One dimension, or two joined by a comma (``app,day``: per app, per day)."""
    dims = tuple(part.strip() for part in ("day" if value is None else value).split(","))
    if not 1 <= len(dims) <= 2 or len(set(dims)) != len(dims) or any(d not in GROUPS for d in dims):
        raise InvalidRequest(f"group_by is one or two of {', '.join(GROUPS)}, comma-separated", param="group_by")
    return dims


def aggregate(usage_filter: UsageFilter, group_by: str | None) -> list[dict[str, Any]]:
    """Rows of requests, errors, tokens, cost and latency percentiles per group, in group order.

    Each row names its group under each dimension (``{"app": ..., "day": ...}``) and, with one
    dimension, also as ``group``."""
    dims = parse_group_by(group_by)
    buckets = [_bucket(dim, db.engine.dialect.name).label(f"g_{dim}") for dim in dims]
    sums = [
        func.sum(getattr(UsageHourly, name)).label(name)
        for name in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_micros", *LATENCY_COLUMNS)
    ]
    rows = db.session.execute(
        select(*buckets, *sums).where(*usage_filter.rollup_clauses()).group_by(*buckets).order_by(*buckets)
    ).all()
    names = _names(usage_filter.account_id, dims[0], [row[0] for row in rows])
    result = []
    for row in rows:
        group = tuple(row[: len(dims)])
        histogram = [int(getattr(row, name) or 0) for name in LATENCY_COLUMNS]
        labels = dict(zip(dims, group))
        if len(dims) == 1:
            labels["group"] = group[0]
        p50, p95 = percentile(histogram, 0.5), percentile(histogram, 0.95)
        result.append(
            {
                **labels,
                "name": names.get(group[0]),
                "requests": int(row.requests),
                "errors": int(row.errors or 0),
                "prompt_tokens": int(row.prompt_tokens or 0),
                "completion_tokens": int(row.completion_tokens or 0),
                "cost": usd(int(row.cost_micros or 0)),
                "latency_p50_ms": round(p50, 1) if p50 is not None else None,
                "latency_p95_ms": round(p95, 1) if p95 is not None else None,
            }
        )
    return result


def _names(account_id, group_by, groups):
    """Display names: registered app names, key names."""
    if group_by == "app":
        return dict(db.session.execute(select(App.app_id, App.name).where(App.account_id == account_id)).all())
    if group_by == "key" and groups:
        return {
            key_id: name
            for key_id, name in db.session.execute(
                select(ApiKey.id, ApiKey.name).where(ApiKey.account_id == account_id, ApiKey.id.in_(groups))
            ).all()
        }
    return {}


def _encode_cursor(event):
    raw = f"{event.created_at.isoformat()}|{event.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, event_id = raw.split("|", 1)
        if len(event_id) > 64 or "\x00" in event_id:  # an event id is a request id
            raise ValueError(event_id)
        return parse_time(moment, "cursor"), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidRequest):
        raise InvalidRequest("invalid cursor", param="cursor") from None


def events(usage_filter: UsageFilter, limit: int, cursor: str | None = None) -> tuple[Sequence[UsageEvent], str | None]:
    """A page of raw events, newest first, and the cursor of the next page (None at the end)."""
    query = select(UsageEvent).where(*usage_filter.clauses())
    if cursor:
        moment, event_id = _decode_cursor(cursor)
        query = query.where(
            or_(UsageEvent.created_at < moment, and_(UsageEvent.created_at == moment, UsageEvent.id < event_id))
        )
    page = db.session.scalars(query.order_by(UsageEvent.created_at.desc(), UsageEvent.id.desc()).limit(limit + 1)).all()
    more = len(page) > limit
    page = page[:limit]
    return page, (_encode_cursor(page[-1]) if more else None)


def apps(account_id: int) -> list[dict[str, Any]]:
    """Registered apps and every app id seen in usage, with their display names."""
    registered = dict(db.session.execute(select(App.app_id, App.name).where(App.account_id == account_id)).all())
    seen = db.session.scalars(select(UsageEvent.app_id).where(UsageEvent.account_id == account_id).distinct()).all()
    return [
        {"app_id": app_id, "name": registered.get(app_id), "registered": app_id in registered}
        for app_id in sorted(set(registered) | set(seen))
    ]


def register_app(account_id: int, app_id: str, name: object) -> dict[str, Any]:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200 or "\x00" in name:
        raise InvalidRequest("an app's name is 1 to 200 characters", param="name")
    app = db.session.scalar(select(App).where(App.account_id == account_id, App.app_id == app_id))
    if app is None:
        app = App(account_id=account_id, app_id=app_id, name=name.strip())
        db.session.add(app)
    else:
        app.name = name.strip()
    db.session.commit()
    return {"app_id": app.app_id, "name": app.name, "registered": True}


def unregister_app(account_id: int, app_id: str) -> bool:
    app = db.session.scalar(select(App).where(App.account_id == account_id, App.app_id == app_id))
    if app is not None:
        db.session.delete(app)
        db.session.commit()
    return app is not None
