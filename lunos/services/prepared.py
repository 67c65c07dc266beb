"""The statements every request runs, executed on a pooled DBAPI connection.

SQLAlchemy compiles each statement once per dialect, with its type conversions (the bind and
result processors that turn datetimes into SQLite's text, JSON into strings and back). What this
skips is SQLAlchemy's work per execution and the Session's per transaction, which on SQLite cost
several times the statements themselves: a request looks up its key and runs two transactions.
The order and the BindParameters of a compiled statement's parameters are SQLAlchemy internals,
read in lunos/internals.py (checked at start-up); the type conversions are TypeEngine's public
``dialect_impl(dialect).bind_processor``/``result_processor``, looked up once per statement.

On PostgreSQL a round trip to the server costs more than most statements: a transaction runs
in psycopg's pipeline mode, where a statement whose outcome is not read travels with the next
one that is, or with the COMMIT.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from lunos.internals import bind_names, bind_parameter

T = TypeVar("T")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is away (down, restarting, unreachable, locked), as
    opposed to a statement that is wrong: the first is a 503 and worth retrying later."""
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(getattr(exc, "connection_invalidated", False))


def retry_if_lost(call: Callable[[], T]) -> T:
    """``call()``, and once more when it failed on a connection found lost before anything could
    have committed (``retry_safe``): after a database restart every pooled connection is dead,
    and the first request should not be the one that finds out."""
    try:
        return call()
    except DBAPIError as exc:
        if not getattr(exc, "retry_safe", False):
            raise
    return call()


class Prepared:
    """A Core statement, compiled on first use for each dialect. An INSERT names ``columns``:
    every row supplies all of them, as nothing fills in Python-side defaults here."""

    def __init__(self, statement, columns=None):
        self.statement = statement
        self.columns = columns
        self._forms = {}

    def form(self, dialect: Dialect) -> "_Form":
        form = self._forms.get(dialect.name)
        if form is None:
            form = self._forms[dialect.name] = _Form(self.statement, dialect, self.columns)
        return form


class _Form:
    """One dialect's SQL, and how to turn a dict of values into its parameters and rows back."""

    def __init__(self, statement, dialect, columns):
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        self.sql = compiled.string
        # The parameters' order and BindParameters are SQLAlchemy internals (lunos/internals.py).
        positional, names = bind_names(compiled)
        # (name, processor, required, fixed value): a bind that is not looked up in the values,
        # such as the 0 in .values(spent_micros=0), carries its own. None is SQL NULL, JSON
        # columns included (SQLAlchemy would write JSON null there).
        binds = []
        for name in names:
            bind = bind_parameter(compiled, name)
            binds.append(
                (name, bind.type.dialect_impl(dialect).bind_processor(dialect), bind.required, bind.effective_value)
            )

        def parameters(values):
            converted = []
            for name, process, required, fixed in binds:
                value = values[name] if required else fixed
                converted.append(value if process is None or value is None else process(value))
            return tuple(converted) if positional else dict(zip(names, converted))

        self.parameters = parameters
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "exported_columns", ())
        ]
        self.results = processors if any(processors) else None

    def row(self, raw: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.results is None:
            return raw
        return tuple(
            value if process is None or value is None else process(value) for process, value in zip(self.results, raw)
        )


class Sent:
    """What ``Transaction.send`` sent: ``rows``, one list per statement, once committed."""

    rows: list | None = None


class Transaction:
    """A pooled DBAPI connection and a cursor: ``run``, ``run_many``, ``rows``, ``each``; see
    ``transaction``."""

    def __init__(self, dialect, connection):
        self.dialect = dialect
        self.connection = connection
        self.cursor = connection.cursor()
        self.pipeline = None  # psycopg's, while a transaction is open on PostgreSQL
        self.committing = False  # from here on, a lost connection may have committed
        self.after_commit = []  # reads of what ``send`` sent, once the COMMIT came back

    def run(self, prepared: Prepared, values: Mapping[str, Any] | None = None) -> int:
        """Execute; the number of rows it changed. On PostgreSQL that costs a round trip: a
        statement whose count is not needed goes through ``run_many``."""
        form = prepared.form(self.dialect)
        self.cursor.execute(form.sql, form.parameters(values or {}))
        if self.pipeline is not None:
            self.pipeline.sync()
        return self.cursor.rowcount

    def run_many(self, prepared: Prepared, rows: Iterable[Mapping[str, Any]]) -> None:
        """Execute once per row, reading nothing back: on PostgreSQL the rows are sent with the
        next read or the COMMIT, which raise their errors."""
        form = prepared.form(self.dialect)
        self.cursor.executemany(form.sql, [form.parameters(values) for values in rows])

    def rows(self, prepared: Prepared, values: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute a SELECT (or a statement with RETURNING): its rows, as tuples, converted."""
        return _fetch(self.dialect, prepared, values or {}, self.cursor)

    def first(self, prepared: Prepared, values: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        found = self.rows(prepared, values)
        return found[0] if found else None

    def each(self, statements: Iterable[tuple[Prepared, Mapping[str, Any]]]) -> list[list[tuple[Any, ...]]]:
        """Execute ``(prepared, values)`` pairs in order: a list of rows for each. On PostgreSQL
        they are sent together, in one round trip."""
        if self.pipeline is None:
            return [self.rows(prepared, values) for prepared, values in statements]
        sent = []
        try:
            for prepared, values in statements:
                form, cursor = prepared.form(self.dialect), self.connection.cursor()
                sent.append((form, cursor))
                cursor.execute(form.sql, form.parameters(values))
            # The first fetch sends them all.
            return [[form.row(raw) for raw in cursor.fetchall()] for form, cursor in sent]
        finally:
            for _, cursor in sent:
                cursor.close()

    def send(self, statements: Iterable[tuple[Prepared, Mapping[str, Any]]]) -> Sent:
        """Execute ``(prepared, values)`` pairs without waiting for them: on PostgreSQL they
        travel with the COMMIT and their rows (``Sent.rows``) are read once it came back, so a
        transaction of such statements costs one round trip. A statement sent so cannot depend
        on anything the caller reads back: its conditions belong in its SQL."""
        sent = Sent()
        if self.pipeline is None:
            sent.rows = [self.rows(prepared, values) for prepared, values in statements]
            return sent
        cursors = []
        for prepared, values in statements:
            form, cursor = prepared.form(self.dialect), self.connection.cursor()
            cursors.append((form, cursor))
            cursor.execute(form.sql, form.parameters(values))

        def collect():
            try:
                sent.rows = [[form.row(raw) for raw in cursor.fetchall()] for form, cursor in cursors]
            finally:
                for _, cursor in cursors:
                    cursor.close()

        self.after_commit.append(collect)
        return sent


@contextmanager
def transaction(engine: Engine) -> Iterator[Transaction]:
    """The one way to run a transaction on the request path: committed when the block ends,
    rolled back if it raises.

    When the request's ORM session has a transaction open (it read or wrote through the ORM and
    has not committed), the statements run on the session's own connection, inside that
    transaction, and the block's end commits the session: a request never waits on a lock its
    own uncommitted ORM work holds. Otherwise they run on a pooled connection of their own; on
    PostgreSQL the BEGIN and COMMIT are queued in the pipeline with the statements (psycopg
    would spend a round trip on its own BEGIN), so a transaction costs one round trip per read
    and one to commit."""
    session = _open_session()
    if session is not None:
        with _joined(engine, session) as tx:
            yield tx
        return
    with _checked_out(engine) as (connection, pipelines, state):
        tx = state.tx = Transaction(engine.dialect, connection)
        try:
            if pipelines:
                with connection.dbapi_connection.pipeline() as tx.pipeline:
                    tx.cursor.execute("BEGIN")
                    yield tx
                    tx.committing = True
                    tx.cursor.execute("COMMIT")  # sent, and its errors raised, as the pipeline ends
                for collect in tx.after_commit:
                    collect()
            else:
                yield tx
                tx.committing = True
                connection.commit()
        except BaseException:
            with suppress(Exception):  # a connection that cannot roll back is discarded below
                connection.rollback()
            raise
        finally:
            tx.pipeline = None
            tx.cursor.close()


def in_session_transaction() -> bool:
    """True when the current ORM session has a transaction open (see ``transaction``)."""
    return _open_session() is not None


def _open_session():
    from flask import has_app_context

    from lunos.extensions import db  # the unbound extension; a session exists only in an app context

    # A request that has not touched the ORM has no session yet: building one (and closing it
    # at teardown) only to ask whether it is in a transaction would cost more than asking.
    if not has_app_context() or not db.session.registry.has():
        return None
    session = db.session()
    return session if session.in_transaction() else None


@contextmanager
def _joined(engine, session):
    session.flush()  # the ORM's pending writes go first, so these statements see them
    connection = session.connection().connection  # the pooled DBAPI connection, in the transaction
    errors = engine.dialect.loaded_dbapi.Error
    tx = Transaction(engine.dialect, connection)
    try:
        yield tx
        tx.cursor.close()
        session.commit()
    except errors as exc:
        session.rollback()
        raise DBAPIError.instance(None, None, exc, errors) from None
    except BaseException as exc:
        if isinstance(exc, Exception):
            session.rollback()
        else:  # cut short, perhaps mid-exchange (see _checked_out): its connection is not pooled again
            session.invalidate()
        raise


def read(engine: Engine, prepared: Prepared, values: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
    """One SELECT on its own: its rows. On PostgreSQL one round trip, with no BEGIN or COMMIT."""

    def select():
        with _checked_out(engine) as (connection, _, _state):
            cursor = connection.cursor()
            try:
                return _fetch(engine.dialect, prepared, values or {}, cursor)
            finally:
                cursor.close()

    return retry_if_lost(select)


class _CheckOut:
    """What a checked-out connection's error handling needs to know of its transaction."""

    tx = None


def _fetch(dialect, prepared, values, cursor):
    form = prepared.form(dialect)
    cursor.execute(form.sql, form.parameters(values))
    return [form.row(raw) for raw in cursor.fetchall()]


@contextmanager
def _checked_out(engine):
    """A pooled connection; a psycopg one in autocommit while it is out, as its transactions are
    ours (pipelined, or none for a lone read), and back as the ORM's sessions expect it.

    The driver's errors leave as SQLAlchemy's, which the app maps to HTTP (a database that is
    down is a 503, not a 500), marked ``retry_safe`` when nothing can have committed. A
    connection found lost is discarded with the rest of the pool: a server that restarted has
    closed them all."""
    errors = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except errors as exc:  # no connection at all: nothing was sent
        wrapped = DBAPIError.instance(None, None, exc, errors, connection_invalidated=True)
        wrapped.retry_safe = True
        raise wrapped from None
    driver = connection.dbapi_connection
    ours = hasattr(driver, "pipeline")
    state = _CheckOut()
    try:
        if ours:
            driver.autocommit = True
        yield connection, ours, state
    except errors as exc:
        lost = engine.dialect.is_disconnect(exc, driver, None) or bool(getattr(driver, "closed", False))
        if lost:
            connection.invalidate(exc)
            engine.dispose()
        wrapped = DBAPIError.instance(None, None, exc, errors, connection_invalidated=lost)
        wrapped.retry_safe = lost and not (state.tx is not None and state.tx.committing)
        raise wrapped from None
    except BaseException as exc:
        if not isinstance(exc, Exception):
            # Cut short while it may be mid-exchange with the server (a greenlet killed at
            # shutdown, a timeout): its protocol state is unknown, so nobody else gets it.
            connection.invalidate()
        raise
    finally:
        if ours and connection.is_valid:
            try:
                driver.autocommit = False
            except errors:  # it broke: whatever broke it was raised above
                connection.invalidate()
        connection.close()
