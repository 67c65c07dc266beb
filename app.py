"""Development entry: ``python app.py`` serves on http://127.0.0.1:8000.

On first start it migrates the schema and, on an empty database, creates a ``demo`` account
whose key it writes to instance/demo-key. It serves through gevent, like production, so
streaming behaves the same way.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402

from lunos import create_app  # noqa: E402
from lunos.config import ConfigError  # noqa: E402
from lunos.in_flight import InFlight  # noqa: E402
from lunos.services import housekeeping  # noqa: E402
from lunos.services.demo import ensure_demo_key  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:  # a bad LUNOS_* value: its message, not a traceback
    raise SystemExit(str(exc)) from None


def main():
    with app.app_context():
        if app.config["AUTO_MIGRATE"]:
            upgrade()
        key_file = ensure_demo_key(app.instance_path, app.config["SECRET_KEY"])
    if key_file:
        print(f"Created account 'demo' with its API key in {key_file}", flush=True)
    host = os.environ.get("LUNOS_HOST", "127.0.0.1")
    port = os.environ.get("LUNOS_PORT", "8000")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise SystemExit(f"LUNOS_PORT must be a port number (1 to 65535), not {port!r}")
    port = int(port)
    graceful_s = app.config["GRACEFUL_TIMEOUT_S"]
    print(f"Lunos serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    housekeeper = housekeeping.start(app)
    in_flight = InFlight(app)

    class Handler(WSGIHandler):
        def handle_one_response(self):
            super().handle_one_response()
            if in_flight.draining:  # an answer begun before the stop: no next request on its connection
                self.close_connection = True

    server = WSGIServer((host, port), in_flight, log=None, spawn=Pool(), handler_class=Handler)
    # Ctrl-C and a SIGTERM (a process manager's stop) stop the server from the event loop, not
    # as an exception raised in whatever greenlet runs: the answers under way finish (for up to
    # LUNOS_GRACEFUL_TIMEOUT_S), settlements are written, leases are given back.
    # A second Ctrl-C quits at once.
    stopping, stopped, failed = [], gevent.event.Event(), []

    def stop():
        if stopping:
            os._exit(130)
        stopping.append(True)
        try:
            in_flight.draining = True
            server.close()
            print("Stopping: finishing and settling what is under way (Ctrl-C again to quit at once)", flush=True)
            if not in_flight.wait_idle(graceful_s):
                print(f"Stopping: answers still running after {graceful_s} s are cut short", flush=True)
        except BaseException as exc:
            failed.append(exc)
            raise
        finally:
            try:
                server.stop(timeout=0)  # what is left: connections kept alive with nothing asked
            finally:
                stopped.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop)
    server.start()
    try:
        stopped.wait()
    finally:
        housekeeper.stop()
    if failed:
        raise SystemExit(f"Stopping failed: {failed[0]!r}")


if __name__ == "__main__":
    main()
