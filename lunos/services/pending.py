"""Settlements kept while the database is away: an answer that went out is billed once, later.

When a settlement fails because the database is unreachable, the meter hands it here instead of
losing it: it is appended to this worker's spool file (``LUNOS_SPOOL_DIR``, one file per
worker) and retried, in the order it was kept, by a greenlet of its own, so no request waits
for it. The request's hold stays in place meanwhile, so nothing else can spend that money.
Settling is idempotent (a usage event is written once), so a retry after an ambiguous failure
cannot bill twice.

The spool survives the worker: each worker holds an exclusive lock on its own ``.lock`` file,
which the kernel releases when the process ends, however it ends. Any worker on the host adopts
a spool whose lock it can take (at start and then periodically, see services/housekeeping.py)
and settles what it holds. What is lost: the spool of a host whose disk is lost; the holds of
those requests are then freed, unbilled, by ``release-reservations``.
"""

import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from flask import Flask

from lunos.models.account import utcnow
from lunos.services.prepared import database_unavailable

log = logging.getLogger(__name__)
BATCH = 100
RETRY_CAP_S = 5.0


class PendingSettlements:
    def __init__(self, app: Flask, directory: str | os.PathLike):
        self.app = app
        self.directory = Path(directory)
        self.name = app.extensions["lunos-worker"].replace(":", "-")
        self._items = deque()
        self._lock = threading.Lock()
        self._drainer = threading.Lock()  # one drain at a time: each forgets what it settled
        self._draining = False
        self._held = None  # this worker's locked .lock file, once it has kept anything

    def __len__(self) -> int:
        return len(self._items)

    def keep(self, reservation_id: str | None, account_id: int, event: dict, leased: int | None = None) -> None:
        """Keep a settlement that did not land (the database away, its commit's outcome unknown,
        cut short), and retry it until it lands (the arguments of ``credits.settle``)."""
        item = (reservation_id, account_id, {**event, "created_at": event.get("created_at") or utcnow()}, leased)
        with self._lock:
            self._claim_spool()
            self._items.append(item)
            with open(self._spool_path(), "a", encoding="utf-8") as spool:
                spool.write(_line(item))
        log.warning("settlement of request %s kept to retry (%d pending)", event["id"], len(self))
        self.drain_soon()

    def drain_soon(self) -> None:
        """Start retrying in the background unless a retry is running already."""
        with self._lock:
            if self._draining or not self._items:
                return
            self._draining = True
        threading.Thread(target=self._drain, name="lunos-pending-settlements", daemon=True).start()

    def drain(self, deadline_s: float | None = None) -> bool:
        """Settle what is kept, in order, retrying while the database is away (until
        ``deadline_s`` from now, when given); True when nothing is left."""
        if not self._drainer.acquire(timeout=-1 if deadline_s is None else deadline_s):
            return False
        try:
            return self._drain_held(deadline_s)
        finally:
            self._drainer.release()

    def _drain_held(self, deadline_s: float | None) -> bool:
        from lunos.services import credits

        give_up = None if deadline_s is None else time.monotonic() + deadline_s
        delay = 0.2
        while True:
            with self._lock:
                batch = list(self._items)[:BATCH]
            if not batch:
                return True
            try:
                with self.app.app_context():
                    credits.settle_many(batch)
            except Exception as exc:  # noqa: BLE001  (the database is away, or one item is wrong)
                if not database_unavailable(exc):
                    self._settle_alone(batch)
                    self._forget(len(batch))
                    continue
                if give_up is not None and time.monotonic() + delay > give_up:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            self._forget(len(batch))
            delay = 0.2

    def close(self, deadline_s: float) -> None:
        """At shutdown: settle what is pending within ``deadline_s``; what remains stays in the
        spool for another worker to adopt."""
        self.drain(deadline_s)
        with self._lock:
            if self._held is not None:
                self._held.close()  # releases the lock
                self._held = None

    def adopt_orphans(self) -> int:
        """Take over the spools of workers that are gone (their lock is free); how many settlements."""
        if not self.directory.is_dir():
            return 0
        adopted = 0
        for lock_path in self.directory.glob("*.lock"):
            if lock_path.stem == self.name:
                continue
            adopted += self._adopt(lock_path)
        if adopted:
            log.warning("adopted %d pending settlement(s) of workers that are gone", adopted)
            self.drain_soon()
        return adopted

    def _adopt(self, lock_path: Path) -> int:
        try:
            orphan_lock = open(lock_path, "a")
        except OSError:
            return 0
        with orphan_lock:
            try:
                fcntl.flock(orphan_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # its worker is alive
            spool = lock_path.with_suffix(".jsonl")
            items = _read(spool)
            with self._lock:
                self._claim_spool()
                with open(self._spool_path(), "a", encoding="utf-8") as mine:
                    mine.writelines(_line(item) for item in items)
                self._items.extend(items)
            spool.unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
        return len(items)

    def _drain(self) -> None:
        try:
            self.drain()
        finally:
            with self._lock:
                self._draining = False
            if self._items:
                self.drain_soon()

    def _settle_alone(self, batch: list) -> None:
        """A batch failed for a reason other than the database being away: settle each on its
        own, and set aside (in a .failed file, and the log) any that cannot be settled."""
        from lunos.services import credits

        for item in batch:
            try:
                with self.app.app_context():
                    credits.settle_many([item])
            except Exception:
                log.exception("pending settlement of request %s failed; set aside", item[2]["id"])
                with open(self.directory / f"{self.name}.failed.jsonl", "a", encoding="utf-8") as failed:
                    failed.write(_line(item))

    def _forget(self, count: int) -> None:
        with self._lock:
            for _ in range(count):
                self._items.popleft()
            draft = self._spool_path().with_suffix(".draft")
            with open(draft, "w", encoding="utf-8") as spool:
                spool.writelines(_line(item) for item in self._items)
            os.replace(draft, self._spool_path())

    def _spool_path(self) -> Path:
        return self.directory / f"{self.name}.jsonl"

    def _claim_spool(self) -> None:
        if self._held is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._held = open(self.directory / f"{self.name}.lock", "a")
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _line(item) -> str:
    reservation_id, account_id, event, leased = item
    return (
        json.dumps(
            {
                "reservation_id": reservation_id,
                "account_id": account_id,
                "leased_micros": leased,
                "event": {**event, "created_at": event["created_at"].isoformat()},
            }
        )
        + "\n"
    )


def _read(path: Path) -> list:
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return items
    for line in lines:
        try:
            record = json.loads(line)
            event = record["event"]
            event["created_at"] = datetime.fromisoformat(event["created_at"])
            items.append((record["reservation_id"], record["account_id"], event, record.get("leased_micros")))
        except (ValueError, KeyError, TypeError):  # a line cut by a crash mid-write
            log.error("unreadable line in pending settlements %s: %r", path, line[:200])
    return items


def init_app(app: Flask) -> None:
    directory = app.config["SPOOL_DIR"] or os.path.join(app.instance_path, "pending-settlements")
    app.extensions["lunos-pending"] = PendingSettlements(app, directory)
