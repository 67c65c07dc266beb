"""Reservations and settlement: nothing spent twice, nothing lost, the balance never below zero.

A request reserves its worst-case cost before any upstream call; settlement turns the
reservation into the actual debit in the same transaction as the usage event. Deleting the
reservation row is what makes settlement happen at most once. Both run on every request, so
their statements are prepared (services/prepared.py), not the ORM's unit of work.
"""

import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from lunos import ledger
from lunos.errors import InsufficientCredits
from lunos.extensions import db
from lunos.models import Account, ApiKey, Reservation, UsageEvent
from lunos.models.account import utcnow
from lunos.money import usd
from lunos.services.batching import GroupCommit
from lunos.services.keys import KeyIdentity, window_start
from lunos.services.prepared import (
    Prepared,
    database_unavailable,
    in_session_transaction,
    read,
    retry_if_lost,
    transaction,
)
from lunos.services.rollup import roll_up


def _columns(model):
    """An INSERT's columns: all but a generated primary key."""
    return [c.key for c in model.__table__.columns if c is not model.__table__.autoincrement_column]


# Compiled once, run on the DBAPI connection (lunos/services/prepared.py): every request
# reserves and settles.
_HOLD = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"), Account.balance_micros - Account.reserved_micros >= bindparam("hold"))
    .values(reserved_micros=Account.reserved_micros + bindparam("hold"))
    .returning(Account.id)
)
_BALANCE = Prepared(select(Account.balance_micros, Account.reserved_micros).where(Account.id == bindparam("account")))
# FOR UPDATE takes PostgreSQL's row lock; SQLite has one write lock, taken by the DELETE before.
_BALANCE_LOCKED = Prepared(
    select(Account.balance_micros, Account.reserved_micros).where(Account.id == bindparam("account")).with_for_update()
)
_INSERT_RESERVATION = Prepared(insert(Reservation), _columns(Reservation))
_DELETE_RESERVATION = Prepared(
    delete(Reservation)
    .where(Reservation.id == bindparam("id"))
    .returning(Reservation.amount_micros, Reservation.key_id)
)
# A hold is stale when its worker stopped proving itself alive (or never did: older rows).
_STALE_RESERVATIONS = Prepared(
    select(Reservation.id, Reservation.account_id).where(
        func.coalesce(Reservation.heartbeat_at, Reservation.created_at) < bindparam("cutoff")
    )
)
# A lease's row (services/leases.py): locked, with its amount, by an UPDATE that changes nothing
# (PostgreSQL's row lock, SQLite's write lock); shrunk by what its requests cost.
_LOCK_LEASE = Prepared(
    update(Reservation)
    .where(Reservation.id == bindparam("id"))
    .values(amount_micros=Reservation.amount_micros)
    .returning(Reservation.amount_micros)
)
_SHRINK_LEASE = Prepared(
    update(Reservation)
    .where(Reservation.id == bindparam("id"))
    .values(amount_micros=Reservation.amount_micros - bindparam("by"))
)
_ADD_HOLD = Prepared(
    update(Account)
    .where(Account.id == bindparam("account"))
    .values(reserved_micros=Account.reserved_micros + bindparam("hold"))
)
_HEARTBEAT = Prepared(
    update(Reservation).where(Reservation.id == bindparam("hold")).values(heartbeat_at=bindparam("now"))
)
_INSERT_EVENT = Prepared(insert(UsageEvent), _columns(UsageEvent))
_EVENT_EXISTS = Prepared(select(UsageEvent.id).where(UsageEvent.id == bindparam("id")))
_NEW_WINDOW = Prepared(
    update(ApiKey)
    .where(ApiKey.id == bindparam("key"), or_(ApiKey.window_start.is_(None), ApiKey.window_start < bindparam("start")))
    .values(spent_micros=0, window_start=bindparam("start"))
)
_HOLD_KEY = Prepared(
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key"),
        ApiKey.spent_micros + ApiKey.reserved_micros + bindparam("hold") <= ApiKey.credit_limit_micros,
    )
    .values(reserved_micros=ApiKey.reserved_micros + bindparam("hold"))
    .returning(ApiKey.id)
)
_SETTLE_KEY = Prepared(
    update(ApiKey)
    .where(ApiKey.id == bindparam("key"))
    .values(
        reserved_micros=ApiKey.reserved_micros - bindparam("release"),
        spent_micros=ApiKey.spent_micros + bindparam("charge"),
    )
)


def reserve(account_id: int, amount_micros: int, reservation_id: str, key: KeyIdentity | None = None) -> None:
    """Hold ``amount_micros`` of the account's available balance, or raise InsufficientCredits.

    One conditional UPDATE: concurrent requests serialise on the account row (PostgreSQL) or the
    database write lock (SQLite), and each sees the others' reservations. A key with a credit
    limit (``key``, a KeyIdentity) holds the amount against its limit the same way. Reservations
    that arrive together share one transaction. Until its settlement, the hold is this worker's
    to prove alive (``heartbeat``), whether it was taken or the outcome is unknown.
    """
    holds = current_app.extensions["lunos-holds"]
    holds.add(reservation_id)
    try:
        _submit("lunos-reservations", reserve_many, (account_id, amount_micros, reservation_id, key))
    except InsufficientCredits:
        holds.discard(reservation_id)
        raise


def settle(reservation_id: str | None, account_id: int, event: dict[str, Any], leased: int | None = None) -> bool:
    """Write the usage ``event`` (a dict of UsageEvent columns, cost_micros included) and debit its
    cost against the reservation, in one transaction, shared with concurrent settlements.
    ``leased``: the request was admitted on the lease ``reservation_id`` for that worst case.

    Returns False, writing nothing, when the request was settled already. A cost above what the
    account can pay is charged up to that and the rest recorded as ``unbilled_micros``.
    """
    return _submit("lunos-settlements", settle_many, (reservation_id, account_id, event, leased))


def take_lease(account_id: int, lease_id: str, size: int, least: int, share: int) -> int:
    """Hold a lease (services/leases.py) of ``size``, or of less when a ``share``-th of what the
    account has available is less, as reservation ``lease_id``; what it holds, or 0 (nothing held)
    when that would be under ``least``."""
    with transaction(db.engine) as tx:
        ledger.lock_account(tx, account_id)
        funds = tx.first(_BALANCE, {"account": account_id})
        granted = min(size, max(0, funds[0] - funds[1]) // share) if funds else 0
        if granted < least:
            return 0
        now = utcnow()
        tx.run_many(_ADD_HOLD, [{"account": account_id, "hold": granted}])
        tx.run_many(
            _INSERT_RESERVATION,
            [
                {
                    "id": lease_id,
                    "account_id": account_id,
                    "amount_micros": granted,
                    "key_id": None,
                    "created_at": now,
                    "worker": current_app.extensions["lunos-worker"],
                    "heartbeat_at": now,
                }
            ],
        )
    return granted


def give_back(lease_id: str, account_id: int, keep: int = 0) -> None:
    """Shrink the lease ``lease_id`` to ``keep`` (what is in flight on it), or, at 0, end it,
    releasing the rest of what it holds."""
    with transaction(db.engine) as tx:
        if not keep:
            _release(tx, lease_id, account_id)
            return
        row = tx.first(_LOCK_LEASE, {"id": lease_id})
        if row is not None and row[0] > keep:
            tx.run_many(_SHRINK_LEASE, [{"id": lease_id, "by": row[0] - keep}])
            ledger.post(tx, [], released={account_id: row[0] - keep})


def _release(tx, reservation_id, account_id):
    """Delete a reservation and release what it holds; False when it was gone."""
    row = tx.first(_DELETE_RESERVATION, {"id": reservation_id})
    if row is None:
        return False
    amount, key_id = row
    ledger.post(tx, [], released={account_id: amount})
    if key_id is not None:
        tx.run_many(_SETTLE_KEY, [{"key": key_id, "release": amount, "charge": 0}])
    return True


def _submit(batcher, run, item):
    """Run ``item`` in a shared batch; or alone, in the request's own open ORM transaction (see
    prepared.transaction), which a batch led by another request must not commit."""
    if not in_session_transaction():
        return current_app.extensions[batcher].submit(item)
    [outcome] = run([item])
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def init_app(app: Flask) -> None:
    # Names this worker's holds; a new app (a new worker) is a new name.
    app.extensions["lunos-worker"] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    app.extensions["lunos-holds"] = set()  # ids of this worker's holds that may exist and are not settled
    app.extensions["lunos-reservations"] = GroupCommit(_each_alone_on_failure(_retrying(reserve_many)))
    app.extensions["lunos-settlements"] = GroupCommit(_each_alone_on_failure(_retrying(settle_many)))


def _retrying(run):
    return lambda items: retry_if_lost(lambda: run(items))


def _each_alone_on_failure(run):
    """A batch runner: when one item spoils the shared transaction, each item runs on its own,
    so every caller gets its own outcome."""

    def run_batch(items):
        try:
            return run(items)
        except Exception as exc:
            if len(items) == 1:
                raise
            if database_unavailable(exc):
                # Away, or lost while committing (the batch may have landed): running each
                # again could only fail too, or find its own work done; each caller gets the error.
                return [exc] * len(items)
        results = []
        for item in items:
            try:
                results.extend(run([item]))
            except Exception as exc:  # noqa: BLE001  (that caller gets its own error)
                results.append(exc)
        return results

    return run_batch


# PostgreSQL: the conditional hold and its reservation row in one statement (a data-modifying
# CTE), so a batch of holds and its COMMIT travel together: one round trip. The row is written
# only when the hold was taken; its absence from what comes back says the account was short.
_HELD = (
    update(Account)
    .where(Account.id == bindparam("account"), Account.balance_micros - Account.reserved_micros >= bindparam("hold"))
    .values(reserved_micros=Account.reserved_micros + bindparam("hold"))
    .returning(Account.id)
    .cte("held")
)
_HOLD_AND_RECORD = Prepared(
    insert(Reservation)
    .from_select(
        ["id", "account_id", "amount_micros", "created_at", "worker", "heartbeat_at"],
        select(
            bindparam("id", type_=Reservation.id.type),
            _HELD.c.id,
            bindparam("hold", type_=Reservation.amount_micros.type),
            bindparam("now", type_=Reservation.created_at.type),
            bindparam("worker", type_=Reservation.worker.type),
            bindparam("now", type_=Reservation.heartbeat_at.type),
        ).select_from(_HELD),
    )
    .returning(Reservation.id)
)


def reserve_many(items: Sequence[tuple[int, int, str, KeyIdentity | None]]) -> list[InsufficientCredits | None]:
    """Hold ``(account_id, amount_micros, reservation_id, key)`` items in one transaction; one
    outcome each: None, or the InsufficientCredits to raise.

    Row locks are taken accounts first, in id order, then keys, in id order, as settlement takes
    them, so concurrent batches cannot deadlock. The conditional holds of each phase travel
    together (one round trip on PostgreSQL); items of one account apply in turn."""
    if db.engine.dialect.name == "postgresql" and not any(_limited(key) for *_, key in items):
        return _reserve_in_one_trip(items)
    outcomes, now = [None] * len(items), utcnow()
    with transaction(db.engine) as tx:
        order = sorted(range(len(items)), key=lambda i: items[i][0])
        held = tx.each([(_HOLD, {"account": items[i][0], "hold": items[i][1]}) for i in order])
        accepted = [i for i, rows in zip(order, held) if rows]
        short = [i for i, rows in zip(order, held) if not rows]
        limited = sorted((i for i in accepted if _limited(items[i][3])), key=lambda i: items[i][3].id)
        windows = {items[i][3].id: window_start(items[i][3].credit_limit_reset) for i in limited}
        tx.run_many(_NEW_WINDOW, [{"key": key_id, "start": start} for key_id, start in windows.items() if start])
        key_held = tx.each([(_HOLD_KEY, {"key": items[i][3].id, "hold": items[i][1]}) for i in limited])
        over_limit = [i for i, rows in zip(limited, key_held) if not rows]
        if over_limit:  # the account's hold goes back
            given_back = defaultdict(int)
            for i in over_limit:
                given_back[items[i][0]] += items[i][1]
            ledger.post(tx, [], released=given_back)
        for i in over_limit:
            key, amount = items[i][3], items[i][1]
            outcomes[i] = InsufficientCredits(
                f"This key's credit limit (${usd(key.credit_limit_micros):.2f}"
                f"{' ' + key.credit_limit_reset if key.credit_limit_reset else ''}) cannot cover this request, "
                f"which may cost up to ${usd(amount):.6f}.",
                code="key_limit_exceeded",
            )
        balances = tx.each([(_BALANCE, {"account": items[i][0]}) for i in short])
        for i, rows in zip(short, balances):
            balance, reserved = rows[0] if rows else (0, 0)
            outcomes[i] = _short(items[i][1], balance - reserved)
        refused = set(over_limit)
        worker = current_app.extensions["lunos-worker"]
        reservations = [
            {
                "id": items[i][2],
                "account_id": items[i][0],
                "amount_micros": items[i][1],
                "key_id": items[i][3].id if _limited(items[i][3]) else None,
                "created_at": now,
                "worker": worker,
                "heartbeat_at": now,
            }
            for i in accepted
            if i not in refused
        ]
        if reservations:
            tx.run_many(_INSERT_RESERVATION, reservations)
    return outcomes


def _reserve_in_one_trip(items):
    """``reserve_many`` for keys without a credit limit, on PostgreSQL: one statement a hold,
    all sent with the COMMIT. Accounts are locked in id order, as everywhere."""
    now, worker = utcnow(), current_app.extensions["lunos-worker"]
    order = sorted(range(len(items)), key=lambda i: items[i][0])
    with transaction(db.engine) as tx:
        sent = tx.send(
            [
                (
                    _HOLD_AND_RECORD,
                    {"account": items[i][0], "hold": items[i][1], "id": items[i][2], "now": now, "worker": worker},
                )
                for i in order
            ]
        )
    outcomes = [None] * len(items)
    short = [i for i, rows in zip(order, sent.rows) if not rows]
    if short:  # the message says what is available: a read, only for refusals
        balances = [read(db.engine, _BALANCE, {"account": items[i][0]}) for i in short]
        for i, rows in zip(short, balances):
            balance, reserved = rows[0] if rows else (0, 0)
            outcomes[i] = _short(items[i][1], balance - reserved)
    return outcomes


def _short(amount, available):
    return InsufficientCredits(
        f"Insufficient credits: this request may cost up to ${usd(amount):.6f}, and the "
        f"account has ${usd(available):.6f} available. Add credits or lower max_tokens."
    )


def _limited(key):
    return key is not None and key.credit_limit_micros is not None


def settle_many(items: Sequence[tuple[str | None, int, dict[str, Any], int | None]]) -> list[bool]:
    """Settle ``(reservation_id, account_id, event, leased)`` items (see ``settle``) in one
    transaction; one bool each."""
    with transaction(db.engine) as tx:
        results, leased, overdrawn = _settle(tx, items)
    current_app.extensions["lunos-holds"].difference_update(r for r, _, _, lease in items if lease is None)
    leases = current_app.extensions.get("lunos-leases")
    if leases is not None and (leased or overdrawn):
        leases.settled(leased, overdrawn)
    return results


def _settle(tx, items):
    # What the batch depends on, read together (one round trip on PostgreSQL). A request is
    # settled at most once: its usage event's id is unique, and one whose event exists already
    # is skipped. Deleting its reservation is what releases the hold, once (on SQLite the first
    # DELETE takes the write lock); a request admitted on a lease takes its cost off the lease's
    # row instead, locked first. A request whose hold is gone (never held, or released as stale
    # by release-reservations) is still billed, for what the balance allows. The balances are
    # read last, with PostgreSQL's row locks, in account order so that concurrent batches cannot
    # deadlock.
    reservation_ids = list(dict.fromkeys(r for r, _, _, leased in items if r is not None and leased is None))
    lease_ids = list(dict.fromkeys(r for r, _, _, leased in items if leased is not None))
    event_ids = list(dict.fromkeys(event["id"] for _, _, event, _ in items))
    accounts = sorted({account_id for r, account_id, event, _ in items if r is not None or event["cost_micros"]})
    found = iter(
        tx.each(
            [(_DELETE_RESERVATION, {"id": r}) for r in reservation_ids]
            + [(_LOCK_LEASE, {"id": lease_id}) for lease_id in lease_ids]
            + [(_EVENT_EXISTS, {"id": event_id}) for event_id in event_ids]
            + [(_BALANCE_LOCKED, {"account": account_id}) for account_id in accounts]
        )
    )
    held = {r: rows[0] for r, rows in zip(reservation_ids, found) if rows}
    live_leases = {lease_id for lease_id, rows in zip(lease_ids, found) if rows}
    existing = {event_id for event_id, rows in zip(event_ids, found) if rows}
    funds = {account_id: list(rows[0]) for account_id, rows in zip(accounts, found)}

    results, settled, leased, gave = [], [], [], {}
    for reservation_id, account_id, event, lease_hold in items:
        if event["id"] in existing:
            results.append(False)  # settled already
            if lease_hold is not None:  # by an attempt whose outcome was not known: the lease still hears of it
                leased.append((reservation_id, event["id"], True))
                gave[event["id"]] = min(event["cost_micros"], lease_hold)
            continue
        existing.add(event["id"])
        lease_id = None
        if lease_hold is not None:
            reserved, key_id = (lease_hold, None) if reservation_id in live_leases else (0, None)
            lease_id = reservation_id if reserved else None
            leased.append((reservation_id, event["id"], bool(reserved)))
        elif reservation_id in held:
            reserved, key_id = held.pop(reservation_id)
        else:  # no hold: the key's spend still moves, if it has a limit
            reserved, key_id = 0, (event["key_id"] if reservation_id is not None else None)
        settled.append((account_id, event, reserved, key_id, lease_id))
        results.append(True)
    if not settled:
        return results, [(lease, request, gave[request], live) for lease, request, live in leased], set()

    account_moves, key_moves, lease_moves = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]), defaultdict(int)
    now = utcnow()
    events, entries = [], []
    for account_id, event, reserved, key_id, lease_id in settled:
        charged = 0
        if reserved or event["cost_micros"]:
            balance, open_holds = funds[account_id]
            charged = min(event["cost_micros"], reserved + max(0, balance - open_holds))
            # A lease keeps what its request did not spend, for the requests after it.
            released = min(charged, reserved) if lease_id else reserved
            funds[account_id] = [balance - charged, open_holds - released]
            _add(account_moves[account_id], released, charged)
            if lease_id:
                lease_moves[lease_id] += released
                gave[event["id"]] = released
        if key_id is not None:
            _add(key_moves[key_id], reserved, charged)
        # A settlement kept while the database was away carries the time the request ended.
        events.append(
            {**event, "unbilled_micros": event["cost_micros"] - charged, "created_at": event.get("created_at") or now}
        )
        if charged:  # the ledger row for the debit, with the balance, in this transaction
            entries.append(
                ledger.entry(
                    account_id,
                    -charged,
                    ledger.USAGE,
                    f"usage:{event['id']}",
                    f"{event['model']} {event['prompt_tokens']}+{event['completion_tokens']} tokens",
                    now,
                )
            )
    ledger.post(tx, entries, released={account_id: release for account_id, (release, _) in account_moves.items()})
    if lease_moves:
        tx.run_many(_SHRINK_LEASE, [{"id": lease_id, "by": by} for lease_id, by in lease_moves.items()])
    if key_moves:  # keys after accounts, in id order, as reservations lock them
        tx.run_many(
            _SETTLE_KEY,
            [
                {"key": key_id, "release": release, "charge": charge}
                for key_id, (release, charge) in sorted(key_moves.items())
            ],
        )
    tx.run_many(_INSERT_EVENT, events)
    roll_up(tx, events)
    leased = [(lease_id, request, gave.get(request, 0), live) for lease_id, request, live in leased]
    overdrawn = {account_id for account_id, (balance, open_holds) in funds.items() if balance < open_holds}
    return results, leased, overdrawn


def _add(move, reserved, charged):
    move[0] += reserved
    move[1] += charged


def heartbeat() -> None:
    """Prove alive the holds of this worker's requests not settled yet: release-reservations
    leaves them alone. Only those: a hold nothing here will settle (its COMMIT went out, its
    answer was lost) goes stale and is released."""
    holds, now = list(current_app.extensions["lunos-holds"]), utcnow()
    if holds:
        with transaction(db.engine) as tx:
            tx.run_many(_HEARTBEAT, [{"hold": hold, "now": now} for hold in holds])


def release_stale(older_than: timedelta) -> int:
    """Release, unbilled, the holds whose worker has not proved itself alive for ``older_than``
    (it died mid-request); returns how many. A request still running keeps its hold; one that
    settles after its hold was released is still billed once (see ``_settle``)."""
    stale = read(db.engine, _STALE_RESERVATIONS, {"cutoff": datetime.now(UTC) - older_than})
    released = 0
    for reservation_id, account_id in stale:
        with transaction(db.engine) as tx:
            released += _release(tx, reservation_id, account_id)  # else settled meanwhile
    return released
