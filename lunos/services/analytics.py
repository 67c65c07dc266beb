"""Usage analytics for one account: aggregates by app, model, key, day or hour, and raw events.

Aggregation runs in SQL on the (account_id, created_at) and (account_id, app_id, created_at)
indexes. PostgreSQL computes latency percentiles too; SQLite, which has no percentile function,
gets them from the grouped latencies in Python (development-sized data).
"""
import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, or_, select

from lunos.errors import InvalidRequest
from lunos.extensions import db
from lunos.models import ApiKey, App, UsageEvent
from lunos.services.credits import usd

GROUPS = ("app", "model", "key", "day", "hour")
MAX_RANGE = timedelta(days=366)


@dataclass(frozen=True)
class UsageFilter:
    account_id: int
    start: datetime
    end: datetime
    app: str | None = None
    model: str | None = None
    key: int | None = None

    def clauses(self):
        clauses = [UsageEvent.account_id == self.account_id, UsageEvent.created_at >= self.start,
                   UsageEvent.created_at < self.end]
        if self.app:
            clauses.append(UsageEvent.app_id == self.app)
        if self.model:
            clauses.append(UsageEvent.model == self.model)
        if self.key is not None:
            clauses.append(UsageEvent.key_id == self.key)
        return clauses


def parse_time(value, param):
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise InvalidRequest(f"'{param}' must be an ISO 8601 date or date-time, got {value!r}", param=param) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def make_filter(account_id, args, now=None):
    end = parse_time(args["to"], "to") if args.get("to") else (now or datetime.now(timezone.utc))
    start = parse_time(args["from"], "from") if args.get("from") else end - timedelta(days=30)
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", param="from")
    if end - start > MAX_RANGE:
        raise InvalidRequest("a usage query spans at most 366 days", param="from")
    key = args.get("key")
    if key is not None and not str(key).isdigit():
        raise InvalidRequest("'key' is a key id (a number)", param="key")
    return UsageFilter(account_id, start, end, args.get("app") or None, args.get("model") or None,
                       int(key) if key is not None else None)


def _bucket(group_by, dialect):
    if group_by in ("day", "hour"):
        if dialect == "postgresql":
            return func.to_char(func.date_trunc(group_by, func.timezone("UTC", UsageEvent.created_at)),
                                "YYYY-MM-DD" if group_by == "day" else 'YYYY-MM-DD"T"HH24:00:00"Z"')
        return func.strftime("%Y-%m-%d" if group_by == "day" else "%Y-%m-%dT%H:00:00Z", UsageEvent.created_at)
    return {"app": UsageEvent.app_id, "model": func.coalesce(UsageEvent.model, UsageEvent.requested_model),
            "key": UsageEvent.key_id}[group_by]


def _percentile(ordered, fraction):
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction  # linear interpolation, as percentile_cont
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse_group_by(value):
    """One dimension, or two joined by a comma (``app,day``: per app, per day)."""
    dims = tuple(part.strip() for part in (value or "day").split(","))
    if not 1 <= len(dims) <= 2 or len(set(dims)) != len(dims) or any(d not in GROUPS for d in dims):
        raise InvalidRequest(f"group_by is one or two of {', '.join(GROUPS)}, comma-separated", param="group_by")
    return dims


def aggregate(usage_filter, group_by):
    """Rows of requests, errors, tokens, cost and latency percentiles per group, in group order.

    Each row names its group under each dimension (``{"app": ..., "day": ...}``) and, with one
    dimension, also as ``group``."""
    dims = parse_group_by(group_by)
    dialect = db.engine.dialect.name
    buckets = [_bucket(dim, dialect).label(f"g_{dim}") for dim in dims]
    columns = [*buckets, func.count().label("requests"),
               func.sum(case((UsageEvent.status == "ok", 0), else_=1)).label("errors"),
               func.sum(UsageEvent.prompt_tokens).label("prompt_tokens"),
               func.sum(UsageEvent.completion_tokens).label("completion_tokens"),
               func.sum(UsageEvent.cost_micros).label("cost_micros")]
    if dialect == "postgresql":
        columns += [func.percentile_cont(0.5).within_group(UsageEvent.latency_ms).label("p50"),
                    func.percentile_cont(0.95).within_group(UsageEvent.latency_ms).label("p95")]
    rows = db.session.execute(select(*columns).where(*usage_filter.clauses()).group_by(*buckets)
                              .order_by(*buckets)).all()
    percentiles = {}
    if dialect != "postgresql":
        latencies = {}
        for *group, latency in db.session.execute(
                select(*buckets, UsageEvent.latency_ms).where(*usage_filter.clauses())
                .order_by(*buckets, UsageEvent.latency_ms)):
            latencies.setdefault(tuple(group), []).append(latency)
        percentiles = {g: (_percentile(v, 0.5), _percentile(v, 0.95)) for g, v in latencies.items()}
    names = _names(usage_filter.account_id, dims[0], [row[0] for row in rows])
    result = []
    for row in rows:
        group = tuple(row[:len(dims)])
        p50, p95 = (row.p50, row.p95) if dialect == "postgresql" else percentiles.get(group, (None, None))
        labels = dict(zip(dims, group))
        if len(dims) == 1:
            labels["group"] = group[0]
        result.append({**labels, "name": names.get(group[0]), "requests": row.requests,
                       "errors": int(row.errors or 0), "prompt_tokens": int(row.prompt_tokens or 0),
                       "completion_tokens": int(row.completion_tokens or 0),
                       "cost": usd(int(row.cost_micros or 0)),
                       "latency_p50_ms": round(p50, 1) if p50 is not None else None,
                       "latency_p95_ms": round(p95, 1) if p95 is not None else None})
    return result


def _names(account_id, group_by, groups):
    """Display names: registered app names, key names."""
    if group_by == "app":
        return dict(db.session.execute(select(App.app_id, App.name).where(App.account_id == account_id)).all())
    if group_by == "key" and groups:
        return {key_id: name for key_id, name in db.session.execute(
            select(ApiKey.id, ApiKey.name).where(ApiKey.account_id == account_id, ApiKey.id.in_(groups))).all()}
    return {}


def _encode_cursor(event):
    raw = f"{event.created_at.isoformat()}|{event.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, event_id = raw.split("|", 1)
        return parse_time(moment, "cursor"), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError, InvalidRequest):
        raise InvalidRequest("invalid cursor", param="cursor") from None


def events(usage_filter, limit, cursor=None):
    """A page of raw events, newest first, and the cursor of the next page (None at the end)."""
    query = select(UsageEvent).where(*usage_filter.clauses())
    if cursor:
        moment, event_id = _decode_cursor(cursor)
        query = query.where(or_(UsageEvent.created_at < moment,
                                and_(UsageEvent.created_at == moment, UsageEvent.id < event_id)))
    page = db.session.scalars(query.order_by(UsageEvent.created_at.desc(), UsageEvent.id.desc())
                              .limit(limit + 1)).all()
    more = len(page) > limit
    page = page[:limit]
    return page, (_encode_cursor(page[-1]) if more else None)


def apps(account_id):
    """Registered apps and every app id seen in usage, with their display names."""
    registered = dict(db.session.execute(select(App.app_id, App.name).where(App.account_id == account_id)).all())
    seen = db.session.scalars(select(UsageEvent.app_id).where(UsageEvent.account_id == account_id).distinct()).all()
    return [{"app_id": app_id, "name": registered.get(app_id), "registered": app_id in registered}
            for app_id in sorted(set(registered) | set(seen))]


def register_app(account_id, app_id, name):
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise InvalidRequest("an app's name is 1 to 200 characters", param="name")
    app = db.session.scalar(select(App).where(App.account_id == account_id, App.app_id == app_id))
    if app is None:
        app = App(account_id=account_id, app_id=app_id, name=name.strip())
        db.session.add(app)
    else:
        app.name = name.strip()
    db.session.commit()
    return {"app_id": app.app_id, "name": app.name, "registered": True}


def unregister_app(account_id, app_id):
    app = db.session.scalar(select(App).where(App.account_id == account_id, App.app_id == app_id))
    if app is not None:
        db.session.delete(app)
        db.session.commit()
    return app is not None
