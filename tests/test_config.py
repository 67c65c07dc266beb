"""Settings from the environment: typed, and bad values name the variable."""

import pytest
import sqlalchemy as sa

from lunos import create_app
from lunos.config import ConfigError, database_uri, instance_secret, load_settings
from lunos.extensions import db, limiter
from lunos.services.limits import FixedWindowMemoryStorage


def test_environment_is_read_and_typed():
    settings = load_settings(
        {"LUNOS_UPSTREAM_MAX_RETRIES": "5", "LUNOS_AUTO_MIGRATE": "off", "LUNOS_REDIS_URL": "redis://localhost:6379/0"}
    )
    assert settings["UPSTREAM_MAX_RETRIES"] == 5
    assert settings["AUTO_MIGRATE"] is False
    assert settings["REDIS_URL"] == "redis://localhost:6379/0"


def test_mapping_overrides_environment():
    assert load_settings({"LUNOS_STREAM_KEEPALIVE_S": "3"}, {"STREAM_KEEPALIVE_S": 1.0})["STREAM_KEEPALIVE_S"] == 1.0


@pytest.mark.parametrize(
    "name, value",
    [
        ("LUNOS_UPSTREAM_MAX_RETRIES", "many"),
        ("LUNOS_RETRY_BACKOFF_S", "-1"),
        ("LUNOS_AUTO_MIGRATE", "maybe"),
        ("LUNOS_MAX_JSON_DEPTH", "500"),
        ("LUNOS_MAX_JSON_DEPTH", "8"),
        ("LUNOS_MAX_MESSAGES", "0"),
        ("LUNOS_MAX_CONTENT_PARTS", "x"),
    ],
)
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_postgres_urls_use_psycopg3(tmp_path):
    assert database_uri("postgresql://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    assert database_uri(None, tmp_path) == f"sqlite:///{tmp_path}/lunos.db"


def test_instance_secret_is_generated_once(tmp_path):
    first = instance_secret(tmp_path)
    assert len(first) > 40 and instance_secret(tmp_path) == first


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_starts_without_pool_settings(url):
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        assert db.session.execute(sa.text("select 1")).scalar() == 1


def test_the_limiters_own_hooks_check_no_limit(tmp_path):
    """Lunos counts per key itself: Flask-Limiter's per-request hooks are told every request is
    exempt, so they count nothing (its storage is the per-key limits' own, and stays empty)."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/hooks.db"})
    assert isinstance(limiter.storage, FixedWindowMemoryStorage)  # lunos-memory://, no sweep timer
    client = app.test_client()
    for path in ("/healthz", "/healthz", "/v1/models", "/no-such-page"):
        client.get(path)
    assert limiter.storage.reset() == 0, "no window was counted"


@pytest.mark.parametrize(
    ("name", "value"),
    [("LUNOS_DATABASE_URL", "mysql://x/db"), ("LUNOS_CORS_ORIGINS", "ftp://x")],
)
def test_a_setting_lunos_cannot_use_stops_start_up_naming_it(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app({})
