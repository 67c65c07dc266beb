"""Settings from the environment: typed, and bad values name the variable."""
import pytest
import sqlalchemy as sa

from lunos import create_app
from lunos.config import ConfigError, database_uri, instance_secret, load_settings
from lunos.extensions import db


def test_environment_is_read_and_typed():
    settings = load_settings({"LUNOS_UPSTREAM_MAX_RETRIES": "5", "LUNOS_AUTO_MIGRATE": "off",
                              "LUNOS_REDIS_URL": "redis://localhost:6379/0"})
    assert settings["UPSTREAM_MAX_RETRIES"] == 5
    assert settings["AUTO_MIGRATE"] is False
    assert settings["REDIS_URL"] == "redis://localhost:6379/0"


def test_mapping_overrides_environment():
    assert load_settings({"LUNOS_STREAM_KEEPALIVE_S": "3"}, {"STREAM_KEEPALIVE_S": 1.0})["STREAM_KEEPALIVE_S"] == 1.0


@pytest.mark.parametrize("name, value", [("LUNOS_UPSTREAM_MAX_RETRIES", "many"),
                                         ("LUNOS_RETRY_BACKOFF_S", "-1"), ("LUNOS_AUTO_MIGRATE", "maybe"),
                                         ("LUNOS_MAX_JSON_DEPTH", "500"), ("LUNOS_MAX_JSON_DEPTH", "8"),
                                         ("LUNOS_MAX_MESSAGES", "0"), ("LUNOS_MAX_CONTENT_PARTS", "x")])
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


def test_the_limiter_adds_no_hooks_of_its_own(tmp_path):
    """Lunos counts per key itself; Flask-Limiter's hooks would run on every request for nothing."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/hooks.db"})
    hooks = [*app.before_request_funcs[None], *app.after_request_funcs[None], *app.teardown_request_funcs[None]]
    assert all("limiter" not in repr(hook).lower() for hook in hooks), hooks
    assert app.extensions["limiter"]  # still bound: its storage counts the per-key limits
