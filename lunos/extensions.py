"""Extension objects, created unbound; create_app() binds them with init_app."""
import sqlite3

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so later migrations can alter them on every backend.
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True)  # SQLite alters tables by copying them
# Used for its storage and strategies (lunos/services/limits.py); no route-level limits.
limiter = Limiter(key_func=get_remote_address)


def init_limiter(app):
    """Bind the limiter, without its per-request hooks. Lunos counts requests itself, per key,
    after authentication; the hooks would look for route limits there are none of, on every
    request (a few percent of a request's time)."""
    limiter.init_app(app)
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks[None] = [hook for hook in hooks.get(None, []) if not _bound_to(hook, limiter)]


def _bound_to(hook, owner):
    # A bound method, or a functools.partial over one (Flask-Limiter registers both kinds).
    return getattr(hook, "__self__", None) is owner or owner in getattr(hook, "args", ())

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
