"""Liveness, readiness and version."""
from flask import Blueprint, jsonify
from sqlalchemy import text

from lunos import __version__
from lunos.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    db.session.execute(text("SELECT 1"))  # OperationalError becomes a 503 in the error handler
    return jsonify({"status": "ready"})


@bp.get("/v1/version")
def version():
    return jsonify({"version": __version__})
