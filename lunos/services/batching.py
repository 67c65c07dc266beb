"""Group commit: concurrent callers share one transaction instead of paying for one each."""

import threading
from collections.abc import Callable, Sequence
from typing import Any

import gevent
from gevent import monkey

_UNSET = object()


class _Ticket:
    __slots__ = ("item", "done", "leads", "value", "error")

    def __init__(self, item):
        self.item = item
        self.done = threading.Event()
        self.leads = False
        self.value, self.error = _UNSET, None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class GroupCommit:
    """``submit(item)`` runs ``run_batch([item, ...])`` and returns this item's result, with every
    item submitted meanwhile in the same batch.

    The first caller leads: it yields once so that callers already runnable can join, then runs
    the batch in its own context (its database session) on behalf of all. Callers who arrived
    meanwhile wait, and the first of them leads the next batch, so no caller works for others
    for more than one batch. A single caller makes a batch of one: nothing waits for a timer.

    ``run_batch`` returns one result per item, an exception instance standing for that item's
    failure; an exception it raises fails the whole batch.
    """

    def __init__(self, run_batch: Callable[[list[Any]], Sequence[Any]]):
        self._run_batch = run_batch
        self._lock = threading.Lock()
        self._pending = []
        self._leading = False

    def submit(self, item: Any) -> Any:
        ticket = _Ticket(item)
        with self._lock:
            self._pending.append(ticket)
            follows = self._leading
            self._leading = True
        if follows:
            try:
                ticket.done.wait()
            except BaseException:  # stopped while it waited (its greenlet killed): out of the queue
                with self._lock:
                    if ticket in self._pending:
                        self._pending.remove(ticket)
                    if ticket.leads:
                        self._hand_on()
                raise
            if not ticket.leads:
                return ticket.outcome()
        self._lead(ticket)
        return ticket.outcome()

    def _lead(self, own):
        batch = []
        try:
            if monkey.is_module_patched("threading"):
                gevent.sleep(0)  # let greenlets that are ready reach submit() and join this batch
            with self._lock:
                batch, self._pending = self._pending, []
            try:
                results = self._run_batch([ticket.item for ticket in batch])
            except Exception as exc:  # noqa: BLE001  (every caller in the batch gets the error)
                results = [exc] * len(batch)
            for ticket, result in zip(batch, results):
                if isinstance(result, BaseException):
                    ticket.error = result
                else:
                    ticket.value = result
        finally:
            for ticket in batch:
                if ticket.value is _UNSET and ticket.error is None:
                    ticket.error = RuntimeError("the batch was interrupted")
                ticket.done.set()
            with self._lock:
                if own in self._pending:  # stopped in its yield, before it took the batch
                    self._pending.remove(own)
                self._hand_on()

    def _hand_on(self):
        """Under the lock: the first caller queued leads the next batch, or nobody leads."""
        if self._pending:
            successor = self._pending[0]
            successor.leads = True
            successor.done.set()
        else:
            self._leading = False
