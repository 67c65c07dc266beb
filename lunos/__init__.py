"""Lunos: a self-hosted, OpenAI-compatible LLM API gateway."""

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlalchemy.engine import make_url

__version__ = "0.1.0"


def engine_options(uri, settings):
    # An in-memory SQLite database lives in one connection, which SQLAlchemy pools itself.
    url = make_url(uri)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return {}
    options = {
        "pool_size": settings["DB_POOL_SIZE"],
        "max_overflow": settings["DB_POOL_OVERFLOW"],
        "pool_recycle": 1800,
    }
    # A burst waits for a pooled connection at most 10 s, and a database host that stopped
    # answering is found out in 5 s: a settlement then goes to the spool instead of hanging.
    options["pool_timeout"] = 10
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": 5}
    return options


def redis_pool_options(url, size):
    """Flask-Limiter's storage options: a pool where a burst waits for a connection (up to 10 s)
    instead of failing, as redis-py's default pool does past its 100 connections, and a Redis
    that stopped answering is a 503 within 2 s. For redis:// rediss:// and unix:// URLs; limits'
    other schemes (sentinel, cluster) keep its own pool."""
    if not url or not url.startswith(("redis://", "rediss://", "unix://")):
        return {}
    import redis

    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=size, timeout=10, socket_timeout=2, socket_connect_timeout=2
    )
    return {"connection_pool": pool}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: embedded defaults, then LUNOS_* environment variables, then ``config``."""
    from lunos import (
        cli,
        internals,
        models,
    )
    from lunos import config as settings_module
    from lunos.api import register_blueprints
    from lunos.dashboard.session import CookieSession
    from lunos.errors import register_error_handlers
    from lunos.extensions import db, init_limiter, migrate
    from lunos.gateway import Gateway
    from lunos.jsonio import JSONProvider
    from lunos.services import credits, leases, metered, metering, pending
    from lunos.services.limits import MEMORY_STORAGE_URI

    internals.self_check()  # a library upgrade that moved an internal fails here, naming it
    metering.check_table(models.UsageEvent.__table__)  # settlement writes every column
    app = Flask(__name__, instance_relative_config=True)
    app.json = JSONProvider(app)
    app.session_interface = CookieSession()
    settings = settings_module.load_settings(overrides=config)
    app.config.update(settings)
    database_uri = settings_module.database_uri(settings["DATABASE_URL"], app.instance_path)
    app.config.update(
        SECRET_KEY=settings["SECRET_KEY"] or settings_module.instance_secret(app.instance_path),
        SQLALCHEMY_DATABASE_URI=database_uri,
        # No pre-ping (a round trip per checkout, two checkouts a request): a dropped connection
        # fails one request with a 503 and SQLAlchemy replaces it. Pool sizes per worker.
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_uri, settings),
        MAX_CONTENT_LENGTH=settings["MAX_BODY_BYTES"],
        # The dashboard's session cookie: never readable by scripts, not sent cross-site, and
        # Secure when LUNOS_COOKIE_SECURE says the gateway is served over TLS.
        SESSION_COOKIE_NAME="lunos_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings["COOKIE_SECURE"],
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        RATELIMIT_STORAGE_URI=settings["REDIS_URL"] or MEMORY_STORAGE_URI,
        RATELIMIT_STORAGE_OPTIONS=redis_pool_options(settings["REDIS_URL"], settings["REDIS_POOL_SIZE"]),
        RATELIMIT_STRATEGY="fixed-window",
        RATELIMIT_HEADERS_ENABLED=False,  # lunos sets the OpenAI-style x-ratelimit-* headers itself
    )
    logging.basicConfig(level=settings["LOG_LEVEL"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=settings_module.MIGRATIONS_DIR)
    init_limiter(app)
    Gateway(settings).init_app(app)
    credits.init_app(app)
    leases.init_app(app)
    pending.init_app(app)
    metered.init_app(app)
    register_error_handlers(app)
    register_blueprints(app)
    cli.init_app(app)
    return app
