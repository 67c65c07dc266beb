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
    Flask-Limiter 4.1 has no switch for its per-request hooks; its documented request filter
    tells them every request is exempt, which halves what they cost (about 40 us a request on
    the project machine, against 65 to 80 us without it). A route limit added with
    ``@limiter.limit`` would be exempt too: narrow the filter first."""
    limiter.init_app(app)


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
