"""Usage analytics and apps for the caller's own account: /v1/usage, /v1/usage/events, /v1/apps.

A management key reads the whole account; an inference key only its own requests (see
``own_key_only``); apps are for management keys."""

import csv
import io
from decimal import Decimal

from flask import Blueprint, Response, g, jsonify, request

from lunos.api.auth import own_key_only, require_key, require_management
from lunos.api.body import json_object
from lunos.errors import InvalidRequest, NotFound
from lunos.schemas import APP_ID
from lunos.services import analytics
from lunos.services.usage import summary

bp = Blueprint("usage", __name__, url_prefix="/v1")
CSV_COLUMNS = (
    "group",
    "name",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_p50_ms",
    "latency_p95_ms",
)


def _plain(value):
    """A number as a spreadsheet reads it: 0.000016, not 1.6e-05."""
    if isinstance(value, (float, Decimal)):
        return format(Decimal(str(value)), "f")
    return value


@bp.get("/usage")
@require_key
def usage():
    answer_format = request.args.get("format", "json")
    if answer_format not in ("json", "csv"):
        raise InvalidRequest("'format' is json (the default) or csv", param="format")
    usage_filter = analytics.confine_to_key(analytics.make_filter(g.caller.account_id, request.args), own_key_only())
    group_by = request.args.get("group_by", "day")
    rows = analytics.aggregate(usage_filter, group_by)
    if answer_format == "csv":
        dims = analytics.parse_group_by(group_by)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=(*dims, *CSV_COLUMNS[1:]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({key: _plain(value) for key, value in row.items()} for row in rows)
        filename = "usage-by-" + "-".join(dims) + ".csv"
        return Response(
            out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )
    counted_from, counted_to = usage_filter.hours()  # what the hourly sums cover, not what was asked
    return jsonify(
        {
            "object": "list",
            "group_by": group_by,
            "from": counted_from.isoformat(),
            "to": counted_to.isoformat(),
            "data": rows,
        }
    )


@bp.get("/usage/events")
@require_key
def usage_events():
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise InvalidRequest("'limit' is a number from 1 to 1000", param="limit")
    usage_filter = analytics.confine_to_key(analytics.make_filter(g.caller.account_id, request.args), own_key_only())
    page, cursor = analytics.events(usage_filter, limit, request.args.get("cursor"))
    return jsonify(
        {
            "object": "list",
            "data": [{**summary(e), "key_id": e.key_id} for e in page],
            "next_cursor": cursor,
            "has_more": cursor is not None,
        }
    )


@bp.get("/apps")
@require_management("Apps")
def list_apps():
    return jsonify({"object": "list", "data": analytics.apps(g.caller.account_id)})


def _valid_app_id(app_id):
    if not APP_ID.fullmatch(app_id):
        raise InvalidRequest("an app id is 1 to 64 characters of letters, digits, '.', '_' or '-'", param="app_id")
    return app_id


@bp.put("/apps/<app_id>")
@require_management("Apps")
def register_app(app_id):
    return jsonify(analytics.register_app(g.caller.account_id, _valid_app_id(app_id), json_object().get("name")))


@bp.delete("/apps/<app_id>")
@require_management("Apps")
def unregister_app(app_id):
    if not analytics.unregister_app(g.caller.account_id, _valid_app_id(app_id)):
        raise NotFound(f"No registered app {app_id!r}.", param="app_id")
    return jsonify({"app_id": app_id, "deleted": True})
