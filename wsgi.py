"""Production entry: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gevent patches the standard library before anything else is imported, so that psycopg,
requests and the stream pumps all cooperate on one event loop. Do not use --preload.
"""
from gevent import monkey

monkey.patch_all()

from lunos import create_app  # noqa: E402

app = create_app()
