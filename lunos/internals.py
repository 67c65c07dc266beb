"""The private parts of libraries Lunos relies on, all here: no other module reads one.

Each was kept because the benchmark shows it pays (bench/ab.py, one run, variants alternating);
each accessor says what it reads and why the public API does not do. ``self_check()`` runs when
the app is built (``create_app``) and fails with ``InternalsMoved``, naming the library, its
installed version and what moved, so an upgrade that breaks one stops the start instead of
failing requests.

- SQLAlchemy's compiled statement: ``SQLCompiler.positiontup``, ``bind_names`` and ``binds``,
  the order and the BindParameter of each of its parameters. services/prepared.py compiles the
  request path's statements once and runs them on the DBAPI cursor (psycopg's pipeline on
  PostgreSQL); running them through ``Connection.execute`` instead cost 1.5 to 1.8 ms more CPU
  per request on SQLite (about half again what a request costs), measured in one run,
  alternating, and loses the pipeline on PostgreSQL.

Removed after measuring, in favour of public APIs: urllib3's and http.client's response
internals in the stream reader (providers/http.py), gunicorn's atoms internals (accesslog.py),
Flask's hook lists (extensions.py) and limits' memory storage internals (services/limits.py).
"""

from functools import cache

import sqlalchemy
from sqlalchemy import bindparam, column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.elements import BindParameter


class InternalsMoved(RuntimeError):
    """A library no longer has a private attribute Lunos reads (see lunos/internals.py)."""

    def __init__(self, library: str, version: str, what: str) -> None:
        super().__init__(f"{library} {version}: {what}; lunos/internals.py needs updating")


def bind_names(compiled: Compiled) -> tuple[bool, list[str]]:
    """Whether ``compiled`` takes its parameters by position (SQLite's qmark style), and the
    names of its bind parameters in the order the driver takes them.

    SQLAlchemy keeps that order in ``SQLCompiler.positiontup`` (positional styles) and names in
    ``bind_names`` (a dict of BindParameter to name, in the order they were compiled). The public
    way, ``construct_params``, rebuilds the parameters through the compiler on every execution,
    the cost services/prepared.py exists to avoid. Names SQLAlchemy must escape in the SQL
    (``escaped_bind_names``: spaces, brackets) are not supported; Lunos's columns need none."""
    if compiled.positiontup is not None:
        return True, list(compiled.positiontup)
    return False, list(dict.fromkeys(compiled.bind_names.values()))


def bind_parameter(compiled: Compiled, name: str) -> BindParameter:
    """The BindParameter ``compiled`` names ``name`` (``SQLCompiler.binds``): its type, whether
    a value must be supplied and, when not, its own value."""
    return compiled.binds[name]


@cache  # once per process: create_app runs once per app, and tests build many
def self_check() -> None:
    """Check every internal above against the installed libraries; no I/O, well under a
    millisecond. Raises InternalsMoved."""
    statement = select(column("a")).where(column("a") == bindparam("wanted"), column("b") == 7)
    for dialect, positional in ((sqlite.dialect(), True), (postgresql.psycopg.dialect(), False)):
        compiled = statement.compile(dialect=dialect)
        for attribute in ("positiontup", "bind_names", "binds"):
            if not hasattr(compiled, attribute):
                raise InternalsMoved(
                    "SQLAlchemy", sqlalchemy.__version__, f"{type(compiled).__name__} has no {attribute}"
                )
        try:
            order = bind_names(compiled)
            wanted, fixed = (bind_parameter(compiled, name) for name in order[1])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise InternalsMoved(
                "SQLAlchemy",
                sqlalchemy.__version__,
                f"a compiled statement's binds no longer read as expected ({exc!r})",
            ) from None
        if order[0] != positional or (wanted.key, wanted.required, fixed.effective_value) != ("wanted", True, 7):
            raise InternalsMoved(
                "SQLAlchemy",
                sqlalchemy.__version__,
                f"positiontup/bind_names/binds of a {dialect.name} statement read {order!r}",
            )
