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
from flask_migrate import upgrade  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from lunos import create_app  # noqa: E402
from lunos.services import housekeeping  # noqa: E402
from lunos.services.demo import ensure_demo_key  # noqa: E402

app = create_app()


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
    print(f"Lunos serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    housekeeper = housekeeping.start(app)
    server = WSGIServer((host, port), app, log=None)
    # Ctrl-C and a SIGTERM (a process manager's stop) stop the server from the event loop, not
    # as an exception raised in whatever greenlet runs: settlements finish, leases are given back.
    # A second Ctrl-C quits at once.
    stopping = []

    def stop():
        if stopping:
            os._exit(130)
        stopping.append(True)
        print("Stopping: settling what is pending (Ctrl-C again to quit at once)", flush=True)
        server.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stop)
    try:
        server.serve_forever()
    finally:
        housekeeper.stop()


if __name__ == "__main__":
    main()
