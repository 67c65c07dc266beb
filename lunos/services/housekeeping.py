"""A worker's housekeeping, in one background greenlet: prove its holds alive (so
release-reservations leaves running requests alone), give back idle leases, and adopt the
pending settlements of workers that are gone. Started by the serving entry points (wsgi.py, app.py), not by
create_app, so that building an app (tests, the CLI) starts nothing."""

import logging
import threading

from flask import Flask

from lunos import background
from lunos.services import credits

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(self, app: Flask):
        self.app = app
        self.interval_s = app.config["HEARTBEAT_S"]
        self._stopped = threading.Event()

    def start(self) -> "Housekeeper":
        threading.Thread(target=self._run, name="lunos-housekeeping", daemon=True).start()
        return self

    def run_once(self) -> None:
        with self.app.app_context():
            credits.heartbeat()
            leases = self.app.extensions.get("lunos-leases")
            if leases is not None:
                leases.give_back_idle(self.interval_s)
        self.app.extensions["lunos-pending"].adopt_orphans()

    def stop(self, deadline_s: float = 10.0) -> None:
        """At shutdown: stop, and settle what is pending within ``deadline_s`` (what remains
        stays in the spool for another worker)."""
        self._stopped.set()
        background.drain(deadline_s / 2)  # tokens still to count, settlements after the last byte
        self.app.extensions["lunos-pending"].close(deadline_s)
        leases = self.app.extensions.get("lunos-leases")
        if leases is not None:  # what a settlement still pending needs stays held for it
            with self.app.app_context():
                leases.give_back_all()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001  (the database may be away; try again next time)
                log.warning("housekeeping failed: %s", exc)
            self._stopped.wait(self.interval_s)


def start(app: Flask) -> Housekeeper:
    housekeeper = app.extensions["lunos-housekeeper"] = Housekeeper(app).start()
    return housekeeper
