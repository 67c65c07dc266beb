"""The library internals in lunos/internals.py: each accessor against the installed library, and
the start-up self-check failing, naming the library and its version, when one moves."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from lunos import create_app, internals
from lunos.internals import InternalsMoved, bind_names, bind_parameter

ROOT = Path(__file__).resolve().parent.parent
TABLE = Table("t", MetaData(), Column("a", Integer), Column("b", Integer), Column("c", Integer))
# SET comes before WHERE in the SQL, though the statement names "wanted" first.
STATEMENT = (
    update(TABLE).where(TABLE.c.a == bindparam("wanted")).values(b=bindparam("new"), c=TABLE.c.c + bindparam("new") + 0)
)


@pytest.fixture
def fresh_check():
    """self_check runs once per process; these tests run it again, and leave it to run again."""
    internals.self_check.cache_clear()
    yield internals.self_check
    internals.self_check.cache_clear()


class Missing:
    """A class attribute that reads as absent, as one a release of the library removed."""

    def __init__(self, name):
        self.name = name

    def __get__(self, instance, owner=None):
        raise AttributeError(self.name)


def drop_from_compiler(monkeypatch, attribute):
    """Make SQLAlchemy's compiled statements lack ``attribute`` once compiled (compiling itself
    still needs it), as a release that moved it."""
    original = SQLCompiler.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.__dict__.pop(attribute, None)
        self.__class__ = type(type(self).__name__, (type(self),), {attribute: Missing(attribute)})

    monkeypatch.setattr(SQLCompiler, "__init__", init)


def test_bind_names_are_in_the_order_sqlite_takes_them():
    compiled = STATEMENT.compile(dialect=sqlite.dialect())
    positional, names = bind_names(compiled)
    assert positional and names == ["new", "new", "param_1", "wanted"]
    values = {"wanted": 1, "new": 5}
    parameters = [
        values[name] if bind_parameter(compiled, name).required else bind_parameter(compiled, name).effective_value
        for name in names
    ]
    connection = sqlite3.connect(":memory:")  # the driver, as services/prepared.py runs it
    connection.execute("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?, 0, 10)", [(1,), (2,)])
    connection.execute(compiled.string, parameters)
    assert connection.execute("SELECT a, b, c FROM t ORDER BY a").fetchall() == [(1, 5, 15), (2, 0, 10)]


def test_bind_names_by_name_on_postgresql():
    compiled = STATEMENT.compile(dialect=postgresql.psycopg.dialect())
    positional, names = bind_names(compiled)
    assert not positional and sorted(names) == ["new", "param_1", "wanted"]
    assert all(f"%({name})s" in compiled.string for name in names)


def test_bind_parameter_gives_type_requirement_and_fixed_value():
    compiled = STATEMENT.compile(dialect=sqlite.dialect())
    wanted, fixed = bind_parameter(compiled, "wanted"), bind_parameter(compiled, "param_1")
    assert (wanted.required, isinstance(wanted.type, Integer)) == (True, True)
    assert (fixed.required, fixed.effective_value) == (False, 0)


def test_the_self_check_passes_on_the_installed_libraries(fresh_check):
    fresh_check()


@pytest.mark.parametrize("attribute", ["positiontup", "bind_names", "binds"])
def test_a_missing_attribute_fails_the_check_naming_library_and_version(fresh_check, monkeypatch, attribute):
    drop_from_compiler(monkeypatch, attribute)
    with pytest.raises(InternalsMoved) as raised:
        fresh_check()
    message = str(raised.value)
    assert message.startswith(f"SQLAlchemy {sqlalchemy.__version__}: ")
    assert f"has no {attribute}" in message and "lunos/internals.py needs updating" in message


def test_an_attribute_that_changed_meaning_fails_the_check(fresh_check, monkeypatch):
    original = SQLCompiler.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.positiontup = None  # as if positional statements no longer kept their order there

    monkeypatch.setattr(SQLCompiler, "__init__", init)
    with pytest.raises(InternalsMoved, match=f"SQLAlchemy {sqlalchemy.__version__}: positiontup"):
        fresh_check()


def test_the_app_does_not_start_when_an_internal_moved(fresh_check, monkeypatch, tmp_path):
    drop_from_compiler(monkeypatch, "binds")
    with pytest.raises(InternalsMoved, match="SQLAlchemy .*binds"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/moved.db"})


WAIT_CHECK = r"""
from gevent import monkey
monkey.patch_all()
import sys
import gevent, psycopg
from psycopg import waiting
from lunos import internals

assert internals.use_gevent_wait() is not None and waiting.wait is internals.gevent_wait
url = sys.argv[1]
ticks = []

def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.01)

def query():
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_sleep(0.5), 41 + 1").fetchone()[1] == 42
        try:
            conn.execute("SET statement_timeout = 100")
            conn.execute("SELECT pg_sleep(5)")
        except psycopg.errors.QueryCanceled:
            return "canceled"

ticking = gevent.spawn(ticker)
outcomes = [g.get() for g in gevent.joinall([gevent.spawn(query) for _ in range(3)], raise_error=True)]
ticking.kill()
print(outcomes, len(ticks))
assert outcomes == ["canceled"] * 3
assert len(ticks) >= 10, ticks  # the loop ran other greenlets while the queries waited
"""


def test_psycopg_waits_on_gevent_watchers_and_lets_other_greenlets_run(tmp_path):
    """The production wait (wsgi.py) under gevent: queries answer, errors arrive, and the other
    greenlets of the worker run while a query waits on PostgreSQL."""
    url = os.environ.get("LUNOS_TEST_DATABASE_URL")
    if not url:
        pytest.skip("PostgreSQL run skipped: LUNOS_TEST_DATABASE_URL is not set")
    script = tmp_path / "wait_check.py"
    script.write_text(WAIT_CHECK)
    done = subprocess.run(
        [sys.executable, str(script), url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_gevent_wait_is_not_installed_without_gevent():
    assert internals.use_gevent_wait() is None  # pytest's process is not patched
