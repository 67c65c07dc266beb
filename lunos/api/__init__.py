"""HTTP blueprints: thin layers that parse, call a service and serialise."""

import uuid

from flask import g

from lunos.api import cors
from lunos.api.account import bp as account_bp
from lunos.api.admin import bp as admin_bp
from lunos.api.billing import bp as billing_bp
from lunos.api.chat import bp as chat_bp
from lunos.api.embeddings import bp as embeddings_bp
from lunos.api.health import bp as health_bp
from lunos.api.keys import bp as keys_bp
from lunos.api.models import bp as models_bp
from lunos.api.usage import bp as usage_bp
from lunos.dashboard import bp as dashboard_bp


def register_blueprints(app):
    for blueprint in (
        health_bp,
        models_bp,
        chat_bp,
        embeddings_bp,
        account_bp,
        billing_bp,
        usage_bp,
        keys_bp,
        admin_bp,
        dashboard_bp,
    ):
        app.register_blueprint(blueprint)

    @app.before_request
    def _assign_request_id():
        g.request_id = uuid.uuid4().hex

    @app.after_request
    def _tag_response(response):
        response.headers["x-request-id"] = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    cors.init_app(app)
