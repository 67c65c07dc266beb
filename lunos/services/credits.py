"""Reservations and settlement: nothing spent twice, nothing lost, the balance never below zero.

A request reserves its worst-case cost before any upstream call; settlement turns the
reservation into the actual debit in the same transaction as the usage event. Deleting the
reservation row is what makes settlement happen at most once.
"""
from datetime import datetime, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from lunos.catalog import MICRO_USD
from lunos.errors import InsufficientCredits
from lunos.extensions import db
from lunos.models import Account, Reservation
from lunos.services.accounts import post_entry


def usd(micros):
    return micros / MICRO_USD


def reserve(account_id, amount_micros, reservation_id):
    """Hold ``amount_micros`` of the account's available balance, or raise InsufficientCredits.

    One conditional UPDATE: concurrent requests serialise on the account row (PostgreSQL) or the
    database write lock (SQLite), and each sees the others' reservations.
    """
    held = db.session.execute(
        update(Account)
        .where(Account.id == account_id,
               Account.balance_micros - Account.reserved_micros >= amount_micros)
        .values(reserved_micros=Account.reserved_micros + amount_micros))
    if held.rowcount != 1:
        db.session.rollback()
        balance, reserved = db.session.execute(
            select(Account.balance_micros, Account.reserved_micros).where(Account.id == account_id)).one()
        raise InsufficientCredits(
            f"Insufficient credits: this request may cost up to ${usd(amount_micros):.6f}, and the "
            f"account has ${usd(balance - reserved):.6f} available. Add credits or lower max_tokens.")
    db.session.add(Reservation(id=reservation_id, account_id=account_id, amount_micros=amount_micros))
    db.session.commit()


def settle(reservation_id, account_id, event):
    """Write ``event`` and debit its cost against the reservation, in one transaction.

    Returns False, writing nothing, when the request was settled already. A cost above what the
    account can pay is charged up to that and the rest recorded as ``unbilled_micros``.
    """
    db.session.rollback()  # start clean: this may run after the request's own work failed
    reserved = 0
    if reservation_id is not None:
        reserved = db.session.scalar(
            delete(Reservation).where(Reservation.id == reservation_id).returning(Reservation.amount_micros))
        if reserved is None:
            db.session.rollback()
            return False
        # Takes the account row's lock (or SQLite's write lock) before reading the balance.
        db.session.execute(update(Account).where(Account.id == account_id)
                           .values(reserved_micros=Account.reserved_micros - reserved))
    account = db.session.get(Account, account_id, populate_existing=True)
    payable = reserved + max(0, account.balance_micros - account.reserved_micros)
    charged = min(event.cost_micros, payable)
    event.unbilled_micros = event.cost_micros - charged
    db.session.add(event)
    try:
        db.session.flush()
    except IntegrityError:  # the event id exists: settled already
        db.session.rollback()
        return False
    if charged:
        post_entry(account, -charged, kind="usage", source_ref=f"usage:{event.id}",
                   reason=f"{event.model} {event.prompt_tokens}+{event.completion_tokens} tokens")
    db.session.commit()
    return True


def record(event):
    """Write a usage event for a request that never reserved (refused before any upstream call)."""
    return settle(None, event.account_id, event)


def release_stale(older_than):
    """Release reservations older than ``older_than`` without billing; returns how many."""
    cutoff = datetime.now(timezone.utc) - older_than
    released = 0
    for reservation_id, account_id in db.session.execute(
            select(Reservation.id, Reservation.account_id).where(Reservation.created_at < cutoff)).all():
        amount = db.session.scalar(
            delete(Reservation).where(Reservation.id == reservation_id).returning(Reservation.amount_micros))
        if amount is not None:
            db.session.execute(update(Account).where(Account.id == account_id)
                               .values(reserved_micros=Account.reserved_micros - amount))
            released += 1
        db.session.commit()
    return released
