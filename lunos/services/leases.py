"""Leases: a worker admits an account's requests against a share of its balance held once,
instead of holding each request's worst case with a round trip to the database.

A lease is a reservation like any other (a ``reservations`` row whose amount the account's
``reserved_micros`` counts) that its worker fills with requests in memory. A request that fits
in the free part of its account's lease is admitted at once. One that does not takes a new lease
(one transaction), sized to what this worker admitted for the account over the last
``LUNOS_LEASE_S`` seconds and at least LEASE_MIN_REQUESTS of this request's worst case, and never
more than a LEASE_SHARE-th of what the account has available, so that other workers, and the
requests that still hold their own reservation, find room. Settlement takes a leased request's
cost off its lease's row and off the balance together, in the transaction that writes its usage
event (credits._settle): the books stay exact, the reserved amount always the sum of the rows.

When a request does not fit and no lease can be taken (the account is low, or overdrawn by a
refund), it holds its own reservation, exactly as without leases, and this worker gives back
what it leases of that account. A lease replaced by a new one is given back once nothing is in
flight on it; one left idle for LUNOS_HEARTBEAT_S, and all at shutdown, likewise. Its worker
proves it alive with its other holds, so when the worker dies ``release-reservations`` frees it.
A key with a credit limit holds per request: its limit is counted in the key's row.

The price of it: an account near the end of its balance can be refused by one worker while
another still leases a part of it, until the other gives it back. Each lease is at most a
LEASE_SHARE-th of what was available when it was taken; a burst that takes TAKE_ROUNDS leases in
a row can hold up to 1 - (3/4)^4, about 68%, of it on one worker.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app

from lunos.background import background
from lunos.services import credits

if TYPE_CHECKING:
    from lunos.services.keys import KeyIdentity

log = logging.getLogger(__name__)
LEASE_SHARE = 4  # a lease holds at most this fraction (1/4) of the account's available balance
LEASE_MIN_REQUESTS = 8  # and, when the account allows, at least this many of the request's worst case
TAKE_WAIT_S = 10.0  # how long requests wait for a lease another request of theirs is taking
# A burst that the new lease cannot hold takes the next one (each sized to the demand it saw),
# up to this many times before a request holds its own reservation.
TAKE_ROUNDS = 4
LOW_RETRY_S = 1.0  # after a lease was refused, requests of that account hold their own meanwhile


@dataclass(eq=False)
class Lease:
    id: str
    account_id: int
    amount: int  # what its row holds, as far as this worker knows
    taken_at: float
    holds: dict = field(default_factory=dict)  # request id -> worst case, admitted and not settled
    in_flight: int = 0  # the sum of ``holds``
    admitted: int = 0  # worst cases admitted on it, in all: the account's demand
    open: bool = True  # admits requests
    used_at: float = 0.0

    @property
    def free(self) -> int:
        return self.amount - self.in_flight


class Leases:
    """This worker's leases, by account. Memory only: every change of a row goes through credits."""

    def __init__(self, app: Flask, horizon_s: float):
        self.app = app
        self.horizon_s = horizon_s
        self._lock = threading.Lock()  # never held across I/O
        self._current: dict[int, Lease] = {}  # the lease each account admits on
        self._leases: dict[str, Lease] = {}  # every lease not given back, by id
        self._taking: dict[int, threading.Event] = {}  # accounts whose next lease is being taken
        self._low_until: dict[int, float] = {}
        self._numbers = itertools.count(1)

    def admit(self, account_id: int, worst_micros: int, request_id: str) -> str | None:
        """Admit a request on a lease of its account: the lease's id, or None when it must hold
        its own reservation."""
        if worst_micros <= 0:
            return None
        for _ in range(TAKE_ROUNDS):
            lease_id = self._admit_in_memory(account_id, worst_micros, request_id)
            if lease_id is not None:
                return lease_id
            with self._lock:
                if self._low_until.get(account_id, 0.0) > time.monotonic():
                    return None
                taking = self._taking.get(account_id)
                leads = taking is None
                if leads:
                    taking = self._taking[account_id] = threading.Event()
            if not leads:  # another request is taking the next lease: wait for it, then try it
                taking.wait(TAKE_WAIT_S)
                continue
            try:
                return self._take(account_id, worst_micros, request_id)
            finally:
                with self._lock:
                    del self._taking[account_id]
                taking.set()
        return None

    def _admit_in_memory(self, account_id, worst, request_id):
        with self._lock:
            lease = self._current.get(account_id)
            if lease is None or not lease.open or lease.free < worst:
                return None
            lease.holds[request_id] = worst
            lease.in_flight += worst
            lease.admitted += worst
            lease.used_at = time.monotonic()
            return lease.id

    def _take(self, account_id, worst, request_id):
        now = time.monotonic()
        previous = self._current.get(account_id)
        demand = 0
        if previous is not None:  # what the last lease served, per second, over the horizon
            demand = int(previous.admitted * self.horizon_s / max(now - previous.taken_at, self.horizon_s / 10))
        size = max(LEASE_MIN_REQUESTS * worst, demand)
        lease_id = f"lease:{self.app.extensions['lunos-worker']}:{account_id}:{next(self._numbers)}"
        holds = self.app.extensions["lunos-holds"]
        holds.add(lease_id)  # before its COMMIT: a lease taken but not known to be is still proved alive...
        try:
            granted = credits.take_lease(account_id, lease_id, size, worst, LEASE_SHARE)
        except BaseException as exc:
            holds.discard(lease_id)  # ...until here: nothing will use it, so it goes stale and is freed
            if isinstance(exc, Exception):  # the database is away, say: the requests waiting for
                with self._lock:  # this lease each go their own way now, not one after another
                    self._low_until[account_id] = now + LOW_RETRY_S
            raise
        with self._lock:
            if previous is not None:
                previous.open = False
            if not granted:
                holds.discard(lease_id)
                self._low_until[account_id] = now + LOW_RETRY_S
                empty = self._close(account_id)
            else:
                lease = Lease(lease_id, account_id, granted, taken_at=now, used_at=now)
                lease.holds[request_id] = worst
                lease.in_flight = lease.admitted = worst
                self._current[account_id] = self._leases[lease_id] = lease
                empty = [previous] if previous is not None and not previous.in_flight else []
        if not granted:
            self._give_back(empty)  # at once: the request's own reservation may need that money
            return None
        if empty:
            background(self._give_back_in_context, empty)
        return lease_id

    def _close(self, account_id):
        """Stop admitting on the account's leases (holding the lock); those with nothing in flight."""
        self._current.pop(account_id, None)
        closing = [lease for lease in self._leases.values() if lease.account_id == account_id]
        for lease in closing:
            lease.open = False
        return [lease for lease in closing if not lease.in_flight]

    def settled(self, done: list[tuple[str, str, int, bool]], overdrawn: set[int]) -> None:
        """After a settlement committed: ``done`` are (lease id, request id, what the lease gave,
        whether its row was there); ``overdrawn``, accounts whose holds exceed their balance."""
        empty = []
        with self._lock:
            for lease_id, request_id, given, found in done:
                lease = self._leases.get(lease_id)
                worst = lease.holds.pop(request_id, None) if lease is not None else None
                if worst is None:  # another worker's (an adopted spool), or counted already
                    continue
                lease.in_flight -= worst
                if not found:  # freed by release-reservations: nothing more is admitted on it
                    lease.open, lease.amount = False, lease.in_flight
                    if self._current.get(lease.account_id) is lease:
                        del self._current[lease.account_id]
                else:
                    lease.amount -= given
                if not lease.open and not lease.in_flight:
                    empty.append(lease)
            for account_id in overdrawn:
                if any(lease.account_id == account_id for lease in self._leases.values()):
                    empty.extend(self._close(account_id))
        if empty:
            background(self._give_back_in_context, list(dict.fromkeys(empty)))

    def give_back_idle(self, idle_s: float) -> None:
        """Give back the leases nothing was admitted on for ``idle_s`` and nothing is in flight on."""
        now, idle = time.monotonic(), []
        with self._lock:
            for lease in self._leases.values():
                if not lease.in_flight and (not lease.open or now - lease.used_at >= idle_s):
                    lease.open = False
                    idle.append(lease)
                    if self._current.get(lease.account_id) is lease:
                        del self._current[lease.account_id]
        self._give_back(idle)

    def give_back_all(self) -> None:
        """At shutdown: stop admitting and give back every lease, less what is still in flight on
        it (a settlement that could not land keeps its part, for whoever settles it)."""
        with self._lock:
            leases = list(self._leases.values())
            for lease in leases:
                lease.open = False
            self._current.clear()
        self._give_back(leases)

    def close(self, account_id: int) -> None:
        """Admit nothing more on the account's leases; give them back once nothing is in flight."""
        with self._lock:
            empty = self._close(account_id) if account_id in self._current else []
        self._give_back(empty)

    def free_micros(self, account_id: int) -> int:
        """What this worker's lease of the account can still admit."""
        lease = self._current.get(account_id)
        return lease.free if lease is not None and lease.open else 0

    def _give_back_in_context(self, leases):
        with self.app.app_context():
            self._give_back(leases)

    def _give_back(self, leases):
        holds = self.app.extensions["lunos-holds"]
        for lease in leases:
            with self._lock:
                keep = lease.in_flight
                if self._leases.get(lease.id) is not lease:
                    continue  # given back already
                if not keep:
                    del self._leases[lease.id]
            try:
                credits.give_back(lease.id, lease.account_id, keep)
            except Exception as exc:  # noqa: BLE001  (its row goes stale and release-reservations frees it)
                log.warning("could not give back lease %s: %r", lease.id, exc)
                if keep:
                    continue
            with self._lock:
                lease.amount = keep
            if not keep:
                holds.discard(lease.id)


def admit(account_id: int, worst_micros: int, request_id: str, key: KeyIdentity | None) -> str | None:
    """The lease a request is admitted on (its id), or None: it holds its own reservation."""
    leases = current_app.extensions.get("lunos-leases")
    if leases is None or (key is not None and key.credit_limit_micros is not None):
        return None
    if key is not None and key.available_micros < 0:
        # Its holds exceed its balance (a refund, a dispute): no more requests on what is
        # leased; each holds its own, which the database refuses.
        leases.close(account_id)
        return None
    return leases.admit(account_id, worst_micros, request_id)


def free_micros(account_id: int) -> int:
    """What this worker's lease of the account can still admit (0 without one)."""
    leases = current_app.extensions.get("lunos-leases")
    return leases.free_micros(account_id) if leases is not None else 0


def init_app(app: Flask) -> None:
    if app.config["LEASE_S"] > 0:
        app.extensions["lunos-leases"] = Leases(app, app.config["LEASE_S"])
