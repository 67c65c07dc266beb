"""The gateway's per-app machinery: catalog, pooled HTTP client, providers and router."""

from flask import current_app

from lunos.catalog import load_catalog
from lunos.plans import load_plans
from lunos.providers import build_providers
from lunos.providers.http import UpstreamHTTP
from lunos.routing import RetryPolicy, Router
from lunos.routing.health import HealthBoard


class Gateway:
    def __init__(self, settings):
        self.catalog = load_catalog(settings["CATALOG"])
        self.plans = load_plans(settings["PLANS"])
        self.http = UpstreamHTTP(
            settings["UPSTREAM_POOL_SIZE"], settings["CONNECT_TIMEOUT_S"], quiet_s=settings["STREAM_KEEPALIVE_S"]
        )
        self.health = HealthBoard(
            {key: self.catalog.providers[e.provider].cooldown_s for key, e in self.catalog.endpoints.items()},
            redis_url=settings["REDIS_URL"],
        )
        self.router = Router(
            build_providers(self.catalog, self.http),
            RetryPolicy(
                max_retries=settings["UPSTREAM_MAX_RETRIES"],
                backoff_s=settings["RETRY_BACKOFF_S"],
                retry_after_cap_s=settings["RETRY_AFTER_CAP_S"],
            ),
            self.health,
        )

    def init_app(self, app):
        app.extensions["lunos"] = self


def current_gateway():
    return current_app.extensions["lunos"]
