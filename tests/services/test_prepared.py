"""Transactions on a pooled DBAPI connection: all or nothing, and the connection handed back as
it was found (on PostgreSQL the statements are pipelined and the transaction is ours)."""

import pytest
import sqlalchemy as sa

from lunos.extensions import db
from lunos.ledger import _INSERT as _INSERT_ENTRY
from lunos.models import LedgerEntry
from lunos.models.account import utcnow
from lunos.services.credits import _BALANCE
from lunos.services.prepared import Prepared, read, transaction

_BACKEND_PID = Prepared(sa.select(sa.func.pg_backend_pid()))


@pytest.fixture
def one_connection_app(make_app):
    """One pooled connection, so each transaction here reuses the one before it."""
    return make_app(DB_POOL_SIZE=1, DB_POOL_OVERFLOW=0)


def entry(account, source_ref):
    return {
        "account_id": account,
        "amount_micros": 1,
        "kind": "grant",
        "source_ref": source_ref,
        "reason": None,
        "created_at": utcnow(),
    }


def refs():
    """The ledger's source refs, but the account's opening credit."""
    return set(
        db.session.scalars(
            sa.select(LedgerEntry.source_ref).where(LedgerEntry.source_ref.not_like("account-opening:%"))
        )
    )


def test_an_error_at_the_end_undoes_the_whole_transaction(one_connection_app, account):
    with one_connection_app.app_context():
        with transaction(db.engine) as tx:
            tx.run_many(_INSERT_ENTRY, [entry(account, "taken")])
        # On PostgreSQL the duplicate is only reported when the transaction ends.
        with pytest.raises(sa.exc.IntegrityError):
            with transaction(db.engine) as tx:
                tx.run_many(_INSERT_ENTRY, [entry(account, "first")])
                tx.run_many(_INSERT_ENTRY, [entry(account, "taken")])
                tx.run_many(_INSERT_ENTRY, [entry(account, "last")])
        assert refs() == {"taken"}


def test_an_exception_in_the_block_undoes_what_was_sent(one_connection_app, account):
    with one_connection_app.app_context():
        with pytest.raises(RuntimeError):
            with transaction(db.engine) as tx:
                tx.run_many(_INSERT_ENTRY, [entry(account, "sent")])
                assert tx.first(_BALANCE, {"account": account}) is not None  # what was queued has reached the server
                raise RuntimeError("the caller gives up")
        assert refs() == set()


def test_a_transaction_cut_short_discards_its_connection(one_connection_app, account):
    """A block left by what is not an error (a greenlet killed at shutdown) may have left the
    connection mid-exchange: it is not pooled again, and the next transaction gets a new one."""

    class Killed(BaseException):
        pass

    with one_connection_app.app_context():
        before = read(db.engine, _BACKEND_PID, {})[0][0] if db.engine.dialect.name == "postgresql" else None
        with pytest.raises(Killed):
            with transaction(db.engine) as tx:
                tx.run_many(_INSERT_ENTRY, [entry(account, "cut")])
                raise Killed
        with transaction(db.engine) as tx:
            tx.run_many(_INSERT_ENTRY, [entry(account, "next")])
        assert db.engine.pool.checkedout() == 0
        assert refs() == {"next"}
        db.session.remove()
        if before is not None:
            assert read(db.engine, _BACKEND_PID, {})[0][0] != before, "a new connection"


def test_a_transaction_cut_short_in_the_orms_discards_its_connection(one_connection_app, account):
    """The same when the block ran in the request's open ORM transaction: its writes are undone
    and its connection is not pooled again."""

    class Killed(BaseException):
        pass

    with one_connection_app.app_context():
        postgresql = db.engine.dialect.name == "postgresql"
        db.session.add(LedgerEntry(**entry(account, "orm")))
        db.session.flush()  # the session's transaction is open, on its pooled connection
        before = db.session.execute(sa.select(sa.func.pg_backend_pid())).scalar() if postgresql else None
        with pytest.raises(Killed):
            with transaction(db.engine) as tx:
                tx.run_many(_INSERT_ENTRY, [entry(account, "cut")])
                raise Killed
        db.session.remove()
        assert db.engine.pool.checkedout() == 0
        if before is not None:
            assert read(db.engine, _BACKEND_PID, {})[0][0] != before, "a new connection"
        assert refs() == set()
        db.session.remove()


def test_the_connection_goes_back_to_the_orm_in_a_transaction(one_connection_app, account):
    with one_connection_app.app_context():
        with pytest.raises(sa.exc.IntegrityError):
            with transaction(db.engine) as tx:
                tx.run_many(_INSERT_ENTRY, [entry(account, "twice"), entry(account, "twice")])
        read(db.engine, _BALANCE, {"account": account})
        # The same pooled connection: a rollback still undoes the session's write.
        db.session.add(LedgerEntry(**entry(account, "rolled-back")))
        db.session.flush()
        db.session.rollback()
        assert refs() == set()


def test_each_gives_every_statement_its_rows_in_order(one_connection_app, account):
    with one_connection_app.app_context():
        with transaction(db.engine) as tx:
            found = tx.each(
                [
                    (_BALANCE, {"account": account}),
                    (_BALANCE, {"account": account + 1000}),
                    (_BALANCE, {"account": account}),
                ]
            )
        assert found == [[(10_000_000, 0)], [], [(10_000_000, 0)]]
        assert read(db.engine, _BALANCE, {"account": account}) == [(10_000_000, 0)]


def test_the_first_request_after_the_server_dropped_its_connections_succeeds(one_connection_app, account, auth):
    with one_connection_app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("a server that drops its connections: PostgreSQL only")
        [(pid,)] = read(db.engine, _BACKEND_PID)
        killer = sa.create_engine(db.engine.url)
        with killer.connect() as conn:  # as a restarting server would
            conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))
        killer.dispose()
    client = one_connection_app.test_client()
    body = {"model": "test/echo", "messages": [{"role": "user", "content": "hello"}]}
    # The pooled connection is dead: found lost before anything was sent, so tried again on a new one.
    first = client.post("/v1/chat/completions", json=body, headers=auth)
    assert first.status_code == 200, first.get_json()
    with one_connection_app.app_context():
        [(new_pid,)] = read(db.engine, _BACKEND_PID)
    assert new_pid != pid
