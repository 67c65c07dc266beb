"""Production entry: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gevent patches the standard library before anything else is imported, so that psycopg,
requests and the stream pumps all cooperate on one event loop. Do not use --preload.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402

from lunos import create_app, internals  # noqa: E402
from lunos.services import housekeeping  # noqa: E402

internals.use_gevent_wait()  # psycopg waits on gevent's watchers, not its poll() emulation
internals.json_gunicorn_errors()  # what gunicorn refuses before the app is answered in JSON too
app = create_app()
# Heartbeats of this worker's holds, adoption of spools left by workers that are gone; stopped
# (and what is pending settled) by gunicorn.conf.py's worker_exit.
housekeeping.start(app)

# One process holds thousands of streams, each with its own objects, and the collector walks
# them all: keep what start-up built out of its reach, and collect young objects less often.
gc.freeze()
gc.set_threshold(50_000, 20, 20)
