"""Development entry: ``python app.py`` migrates the schema and serves on 127.0.0.1:8000.

It serves through gevent, like production, so streaming behaves the same way.
"""
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from lunos import create_app  # noqa: E402

app = create_app()

if __name__ == "__main__":
    if app.config["AUTO_MIGRATE"]:
        from flask_migrate import upgrade
        with app.app_context():
            upgrade()
    host = os.environ.get("LUNOS_HOST", "127.0.0.1")
    port = int(os.environ.get("LUNOS_PORT", "8000"))
    print(f"Lunos serving on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    WSGIServer((host, port), app).serve_forever()
