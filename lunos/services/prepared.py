"""The statements every request runs, executed on a pooled DBAPI connection.

SQLAlchemy compiles each statement once per dialect, with its type conversions (the bind and
result processors that turn datetimes into SQLite's text, JSON into strings and back). What this
skips is SQLAlchemy's work per execution and the Session's per transaction, which on SQLite cost
several times the statements themselves: a request runs three transactions.
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
    """A pooled DBAPI connection and a cursor: ``run``, ``run_many``, ``rows``; see ``transaction``."""

    def __init__(self, engine):
        self.dialect = engine.dialect
        self.connection = engine.raw_connection()
        self.cursor = self.connection.cursor()
        # The driver's own exception (sqlite3's, psycopg's): SQLAlchemy does not wrap these.
        self.IntegrityError = self.dialect.loaded_dbapi.IntegrityError

    def run(self, prepared, values=None):
        """Execute; the number of rows it changed."""
        form = prepared.form(self.dialect)
        self.cursor.execute(form.sql, form.parameters(values or {}))
        return self.cursor.rowcount

    def run_many(self, prepared, rows):
        form = prepared.form(self.dialect)
        self.cursor.executemany(form.sql, [form.parameters(values) for values in rows])

    def rows(self, prepared, values=None):
        """Execute a SELECT (or a statement with RETURNING): its rows, as tuples, converted."""
        form = prepared.form(self.dialect)
        self.cursor.execute(form.sql, form.parameters(values or {}))
        return [form.row(raw) for raw in self.cursor.fetchall()]

    def first(self, prepared, values=None):
        found = self.rows(prepared, values)
        return found[0] if found else None


@contextmanager
def transaction(engine):
    """One transaction on its own pooled connection: committed when the block ends, rolled back
    if it raises. The connection goes back to the pool either way."""
    tx = Transaction(engine)
    try:
        yield tx
        tx.connection.commit()
    except BaseException:
        tx.connection.rollback()
        raise
    finally:
        tx.cursor.close()
        tx.connection.close()
