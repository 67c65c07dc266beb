"""gunicorn settings for Lunos: gevent workers so thousands of SSE streams share one process.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os
import subprocess
import sys


def _whole_number(name, default):
    value = os.environ.get(name, str(default))
    if not value.strip().isascii() or not value.strip().isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


bind = os.environ.get("LUNOS_BIND", "0.0.0.0:8000")
worker_class = "gevent"
workers = _whole_number("LUNOS_WORKERS", multiprocessing.cpu_count())
worker_connections = _whole_number("LUNOS_WORKER_CONNECTIONS", 2000)
# gevent workers heartbeat from the event loop, so a long stream does not trip this.
timeout = 60
# On a reload (SIGHUP) or stop (SIGTERM), how long running requests may go on: long enough for
# a long completion to finish streaming.
graceful_timeout = _whole_number("LUNOS_GRACEFUL_TIMEOUT_S", 600)
keepalive = 75
preload_app = False  # psycopg must be imported after gevent patches, in each worker
# gunicorn's control socket has one fixed path per user: two instances on one host would
# fight over it, and Lunos does not use it.
control_socket_disable = True
accesslog = "-"
# The stock format; atoms computed only when the format reads them (lunos/accesslog.py).
logger_class = "lunos.accesslog.AccessLogger"
errorlog = "-"


def on_starting(server):
    """Migrate the schema once, in a child process, before workers start."""
    if os.environ.get("LUNOS_AUTO_MIGRATE", "true").lower() in ("0", "false", "no", "off"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=here, check=True)


# What a worker keeps of graceful_timeout for itself: after that long its requests still
# running are stopped (a stream is billed as interrupted), and worker_exit settles and spools
# (up to 15 s) before the arbiter's SIGKILL at graceful_timeout would cut all of it short.
WORKER_EXIT_MARGIN_S = 20


def post_worker_init(worker):
    """The worker stops waiting for its requests WORKER_EXIT_MARGIN_S before the arbiter kills it."""
    whole = worker.cfg.graceful_timeout
    worker.cfg.set("graceful_timeout", max(whole // 2, whole - WORKER_EXIT_MARGIN_S))


def worker_exit(server, worker):
    """Settle what the worker kept while the database was away (bounded); what remains waits in
    its spool for another worker."""
    housekeeper = getattr(worker, "wsgi", None) and worker.wsgi.extensions.get("lunos-housekeeper")
    if housekeeper:
        housekeeper.stop(deadline_s=10)
