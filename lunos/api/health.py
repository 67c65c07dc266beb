"""Liveness, readiness and version."""

import redis
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from lunos import __version__
from lunos.errors import ServiceUnavailable
from lunos.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    db.session.execute(text("SELECT 1"))  # OperationalError becomes a 503 in the error handler
    redis_url = current_app.config["REDIS_URL"]
    if redis_url:
        try:
            with redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
                client.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"Redis is unavailable: {exc}") from None
    return jsonify({"status": "ready"})


@bp.get("/v1/version")
def version():
    return jsonify({"version": __version__})
