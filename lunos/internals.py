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

- psycopg's wait function: ``psycopg.waiting.wait``, which ``Connection.wait`` looks up on each
  call, with the ``WAIT_*``/``READY_*`` constants and ``errors._WaitTimeout`` of its protocol.
  Under gevent psycopg picks ``wait_poll``, which goes through gevent's ``select.poll``
  emulation (a poll object, a watcher and an event per wait); ``use_gevent_wait()`` puts a
  wait on one gevent io watcher in its place. ``bench/pg_wait.py``, alternating rounds in one
  run: 156 to 164 us of CPU per PostgreSQL round trip with psycopg's choice, 123 to 136 us with
  this one (wall 356 to 380 us against 285 to 311 us). ``PSYCOPG_WAIT_FUNC``, psycopg's own
  switch, only chooses among its functions.

- gunicorn's error page: ``gunicorn.util.write_error(sock, status, reason, message)``, which its
  workers call for what they cannot parse before the app sees it (a request line or headers too
  large, broken chunked framing, a bad Content-Length). It writes HTML; ``json_gunicorn_errors()``
  puts an OpenAI-shaped JSON body in its place, same status, so that every answer is the API's.
  Not a matter of speed: gunicorn has no setting for it.

Removed after measuring, in favour of public APIs: urllib3's and http.client's response
internals in the stream reader (providers/http.py), gunicorn's atoms internals (accesslog.py),
Flask's hook lists (extensions.py) and limits' memory storage internals (services/limits.py).
"""

import time
from collections.abc import Callable, Generator
from functools import cache
from typing import Any

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


_READ, _WRITE = 1, 2  # libev's event bits, which gevent's io watchers take and report


def gevent_wait(gen: Generator[int, int, Any], fileno: int, interval: float = 0.0, timeout: float | None = None) -> Any:
    """psycopg's WaitFunc protocol on gevent's io watchers: ``gen`` yields the events it waits
    for (``WAIT_R``/``WAIT_W``/``WAIT_RW``) and is sent the ones that came (``READY_*``), or
    ``READY_NONE`` every ``interval`` seconds so that it can check for a cancellation."""
    from gevent.hub import Waiter, get_hub
    from psycopg import errors, waiting

    hub = get_hub()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        state = next(gen)
        while True:
            wait_s = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            events = (_READ if state & waiting.WAIT_R else 0) | (_WRITE if state & waiting.WAIT_W else 0)
            try:
                watcher = hub.loop.io(fileno, events)
            except OSError as closed:  # what psycopg's own waits say of a closed descriptor
                raise errors.OperationalError("connection socket closed") from closed
            timer = hub.loop.timer(wait_s)
            # A Waiter, not the greenlet itself: when both fire in one turn of the loop, the
            # second switch is kept in the Waiter instead of resuming the greenlet elsewhere.
            waiter = Waiter(hub)
            try:
                watcher.start(waiter.switch, pass_events=True)
                timer.start(waiter.switch, 0)
                revents = waiter.get()
            finally:
                watcher.close()
                timer.close()
            if not revents:
                gen.send(waiting.READY_NONE)
            else:  # an error on the descriptor reads as readable: psycopg's read then reports it
                ready = (waiting.READY_W if revents & _WRITE else 0) | (waiting.READY_R if revents & _READ else 0)
                state = gen.send(ready or waiting.READY_R)
            if deadline is not None and time.monotonic() >= deadline:
                raise errors._WaitTimeout("wait timeout expired")
    except StopIteration as stop:
        return stop.value


def use_gevent_wait() -> Callable | None:
    """Make psycopg wait on gevent's io watchers (see the module's docstring) when the standard
    library is patched by gevent; psycopg's own choice otherwise. Returns the function replaced."""
    from gevent import monkey

    if not monkey.is_module_patched("select"):
        return None
    _check_psycopg()
    from psycopg import waiting

    replaced, waiting.wait = waiting.wait, gevent_wait
    return replaced


def json_gunicorn_errors() -> None:
    """gunicorn's own error answers in OpenAI's shape (see the module's docstring)."""
    from gunicorn import util

    _check_gunicorn()
    util.write_error = _write_json_error


def _write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    import orjson
    from gunicorn import util

    error = {
        "message": f"{reason}: {message}" if message else reason,
        "type": "invalid_request_error" if status < 500 else "api_error",
        "param": None,
        "code": None,
    }
    body = orjson.dumps({"error": error})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def _check_gunicorn() -> None:
    import gunicorn
    from gunicorn import util

    for name in ("write_error", "write_nonblock"):
        if not callable(getattr(util, name, None)):
            raise InternalsMoved("gunicorn", gunicorn.__version__, f"gunicorn.util has no {name}")


def _check_psycopg() -> None:
    import psycopg
    from psycopg import errors, waiting

    for module, names in (
        (waiting, ("wait", "WAIT_R", "WAIT_W", "WAIT_RW", "READY_NONE", "READY_R", "READY_W")),
        (errors, ("_WaitTimeout",)),
    ):
        for name in names:
            if not hasattr(module, name):
                raise InternalsMoved("psycopg", psycopg.__version__, f"{module.__name__} has no {name}")


@cache  # once per process: create_app runs once per app, and tests build many
def self_check() -> None:
    """Check every internal above against the installed libraries; no I/O, well under a
    millisecond. Raises InternalsMoved."""
    _check_psycopg()
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
