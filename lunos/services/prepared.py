"""The statements every request runs, executed on a pooled DBAPI connection.

SQLAlchemy compiles each statement once per dialect, with its type conversions (the bind and
result processors that turn datetimes into SQLite's text, JSON into strings and back). What this
skips is SQLAlchemy's work per execution and the Session's per transaction, which on SQLite cost
several times the statements themselves: a request looks up its key and runs two transactions.

On PostgreSQL a round trip to the server costs more than most statements: a transaction runs
in psycopg's pipeline mode, where a statement whose outcome is not read travels with the next
one that is, or with the COMMIT.
"""
from contextlib import contextmanager


class Prepared:
    """A Core statement, compiled on first use for each dialect. An INSERT names ``columns``:
    every row supplies all of them, as nothing fills in Python-side defaults here."""

    def __init__(self, statement, columns=None):
        self.statement = statement
        self.columns = columns
        self._forms = {}

    def form(self, dialect):
        form = self._forms.get(dialect.name)
        if form is None:
            form = self._forms[dialect.name] = _Form(self.statement, dialect, self.columns)
        return form


class _Form:
    """One dialect's SQL, and how to turn a dict of values into its parameters and rows back."""

    def __init__(self, statement, dialect, columns):
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        self.sql = compiled.string
        positional = compiled.positiontup is not None
        names = compiled.positiontup if positional else list(dict.fromkeys(compiled.bind_names.values()))
        # (name, processor, required, fixed value): a bind that is not looked up in the values,
        # such as the 0 in .values(spent_micros=0), carries its own. None is SQL NULL, JSON
        # columns included (SQLAlchemy would write JSON null there).
        binds = [(name, compiled.binds[name].type._cached_bind_processor(dialect), compiled.binds[name].required,
                  compiled.binds[name].effective_value) for name in names]

        def parameters(values):
            converted = []
            for name, process, required, fixed in binds:
                value = values[name] if required else fixed
                converted.append(value if process is None or value is None else process(value))
            return tuple(converted) if positional else dict(zip(names, converted))

        self.parameters = parameters
        processors = [column.type._cached_result_processor(dialect, None)
                      for column in getattr(statement, "exported_columns", ())]
        self.results = processors if any(processors) else None

    def row(self, raw):
        if self.results is None:
            return raw
        return tuple(value if process is None or value is None else process(value)
                     for process, value in zip(self.results, raw))


class Transaction:
    """A pooled DBAPI connection and a cursor: ``run``, ``run_many``, ``rows``, ``each``; see
    ``transaction``."""

    def __init__(self, engine):
        self.dialect = engine.dialect
        self.connection = engine.raw_connection()
        self.cursor = self.connection.cursor()
        # The driver's own exception (sqlite3's, psycopg's): SQLAlchemy does not wrap these.
        self.IntegrityError = self.dialect.loaded_dbapi.IntegrityError
        self.pipeline = None  # psycopg's, while a transaction is open on PostgreSQL

    def run(self, prepared, values=None):
        """Execute; the number of rows it changed (on PostgreSQL a round trip, to know it)."""
        form = prepared.form(self.dialect)
        self.cursor.execute(form.sql, form.parameters(values or {}))
        if self.pipeline is not None:
            self.pipeline.sync()
        return self.cursor.rowcount

    def run_many(self, prepared, rows):
        """Execute once per row, reading nothing back: on PostgreSQL the rows are sent with the
        next read or the COMMIT, which raise their errors."""
        form = prepared.form(self.dialect)
        self.cursor.executemany(form.sql, [form.parameters(values) for values in rows])

    def rows(self, prepared, values=None):
        """Execute a SELECT (or a statement with RETURNING): its rows, as tuples, converted."""
        return _fetch(self.dialect, prepared, values or {}, self.cursor)

    def first(self, prepared, values=None):
        found = self.rows(prepared, values)
        return found[0] if found else None

    def each(self, statements):
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


@contextmanager
def transaction(engine):
    """One transaction on its own pooled connection: committed when the block ends, rolled back
    if it raises. The connection goes back to the pool either way.

    On PostgreSQL the BEGIN and COMMIT are queued in the pipeline with the statements (psycopg
    would spend a round trip on its own BEGIN), so a transaction costs one round trip per read
    and one to commit."""
    tx = Transaction(engine)
    driver = tx.connection.dbapi_connection
    pipelines = hasattr(driver, "pipeline")
    try:
        if pipelines:
            driver.autocommit = True  # the transaction is ours: BEGIN ... COMMIT
            with driver.pipeline() as tx.pipeline:
                tx.cursor.execute("BEGIN")
                yield tx
                tx.cursor.execute("COMMIT")  # sent, and its errors raised, as the pipeline ends
        else:
            yield tx
            tx.connection.commit()
    except BaseException:
        tx.connection.rollback()
        raise
    finally:
        tx.pipeline = None
        tx.cursor.close()
        _release(tx.connection, driver if pipelines else None)


def read(engine, prepared, values=None):
    """One SELECT on its own: its rows. On PostgreSQL one round trip, with no BEGIN or COMMIT."""
    connection = engine.raw_connection()
    driver = connection.dbapi_connection
    autocommits = hasattr(driver, "pipeline")
    try:
        if autocommits:
            driver.autocommit = True
        cursor = connection.cursor()
        try:
            return _fetch(engine.dialect, prepared, values or {}, cursor)
        finally:
            cursor.close()
    finally:
        _release(connection, driver if autocommits else None)


def _fetch(dialect, prepared, values, cursor):
    form = prepared.form(dialect)
    cursor.execute(form.sql, form.parameters(values))
    return [form.row(raw) for raw in cursor.fetchall()]


def _release(connection, autocommitted):
    """Back to the pool; a psycopg connection ``autocommitted`` as it was found, or, when it
    cannot be (it broke), discarded: the ORM's sessions rely on transactions."""
    if autocommitted is not None:
        try:
            autocommitted.autocommit = False
        except Exception:  # noqa: BLE001  (whatever broke was raised to the caller already)
            connection.invalidate()
    connection.close()
