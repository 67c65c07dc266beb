"""Extension objects, created unbound; create_app() binds them with init_app."""

import sqlite3

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so later migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True)  # SQLite alters tables by copying them
# Used for its storage and strategies (lunos/services/limits.py); no route-level limits.
limiter = Limiter(key_func=get_remote_address)


def init_limiter(app: Flask) -> None:
    """Bind the limiter: its storage and strategy count the per-key limits (services/limits.py).

    Lunos counts requests itself, per key, after authentication, and declares no route limits.
    Flask-Limiter 4.1 has no switch for its per-request hooks, and with every request exempt
    (the request filter below) they check nothing, inject no header and reset an empty
    context, at about 40 us a request on the project machine: they are taken off the app again.
    A route limit added with ``@limiter.limit`` would need them back: drop ``_without_hooks``
    and narrow the filter first."""
    limiter.init_app(app)
    _without_hooks(app, limiter)


def _without_hooks(app: Flask, extension: Limiter) -> None:
    """Unregister the before/after/teardown request functions ``extension.init_app`` added (bound
    methods of it, or partials taking it first), leaving every other hook in place."""

    def ours(function) -> bool:
        bound_to = getattr(function, "__self__", None)
        args = getattr(function, "args", ())
        return bound_to is extension or (bool(args) and args[0] is extension)

    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        for scope, functions in hooks.items():
            hooks[scope] = [function for function in functions if not ours(function)]


@limiter.request_filter
def _counted_by_lunos() -> bool:
    return True


# Every timestamp is stored with its time zone (UTC).
Timestamp = DateTime(timezone=True)


@event.listens_for(Engine, "connect")
def _tune_sqlite(dbapi_connection, _record):
    """SQLite: write-ahead log (readers never wait for the writer; a commit needs no fsync with
    synchronous=NORMAL) and a busy timeout, so concurrent writers queue instead of failing."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
