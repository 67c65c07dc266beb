"""Test fixtures: the app built from a test mapping, on SQLite and (when configured) PostgreSQL.

Set LUNOS_TEST_DATABASE_URL to run every database-backed test on PostgreSQL too; without it
those runs are skipped and say so.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
import sqlalchemy as sa
from flask_migrate import upgrade
from werkzeug.serving import make_server

from lunos import create_app
from lunos.extensions import db, limiter
from lunos.in_flight import InFlight
from lunos.models import Account, LedgerEntry, Reservation, UsageEvent
from lunos.services import accounts, keys
from tests.fake_http import stop
from tests.upstream import FakeUpstream

# Its own schema in the test database; parallel runs on one server each set their own.
PG_SCHEMA = os.environ.get("LUNOS_TEST_PG_SCHEMA", "lunos_test")
CATALOG = """
default_model = "test/echo"

[providers.fake]
kind = "openai"
base_url = "{url}/v1"
api_key_env = "LUNOS_TEST_UPSTREAM_KEY"
timeout_s = 1.5

[providers.fake-anthropic]
kind = "anthropic"
base_url = "{url}/v1"
api_key_env = "LUNOS_TEST_UPSTREAM_KEY"
timeout_s = 1.5

[providers.echo]
kind = "echo"

[[models]]
id = "test/echo"
provider = "echo"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_length = 8000
max_output_tokens = 1000

[[models]]
id = "test/primary"
aliases = ["primary-alias"]
provider = "fake"
upstream_model = "primary"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_length = 8000
max_output_tokens = 1000

[[models]]
id = "test/backup"
provider = "fake"
upstream_model = "backup"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_length = 8000
max_output_tokens = 1000

[[models]]
id = "test/third"
provider = "fake"
upstream_model = "third"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_length = 8000
max_output_tokens = 1000

[[models]]
id = "test/embed"
type = "embedding"
provider = "fake"
upstream_model = "embed"
input_usd_per_mtok = 1.0
context_length = 8191

[[models]]
id = "test/embed-backup"
type = "embedding"
provider = "fake"
upstream_model = "embed-backup"
input_usd_per_mtok = 2.0
context_length = 8191

[[models]]
id = "test/echo-embed"
type = "embedding"
provider = "echo"
input_usd_per_mtok = 1.0
context_length = 8191

[[models]]
id = "test/claude"
provider = "fake-anthropic"
upstream_model = "claude"
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_length = 200000
max_output_tokens = 2048
"""

PLANS = """
default_plan = "free"

[plans.free]
monthly_credits_usd = 0
requests_per_minute = 10000
tokens_per_minute = 100000000
models = ["*"]
api_access = true

[plans.basic]
monthly_credits_usd = 10
requests_per_minute = 10000
tokens_per_minute = 100000000
models = ["test/*"]
api_access = true
stripe_price_id = "price_basic"

[plans.pro]
monthly_credits_usd = 50
requests_per_minute = 10000
tokens_per_minute = 100000000
models = ["*"]
api_access = true
stripe_price_id = "price_pro"

[plans.echo-only]
monthly_credits_usd = 0
requests_per_minute = 3
tokens_per_minute = 100000000
models = ["test/echo"]
api_access = true

[plans.tiny-tokens]
monthly_credits_usd = 0
requests_per_minute = 10000
tokens_per_minute = 20
models = ["*"]
api_access = true

[plans.unlimited]
monthly_credits_usd = 0
models = ["*"]
api_access = true

[plans.tokens-only]
monthly_credits_usd = 0
requests_per_minute = 0
tokens_per_minute = 20
models = ["*"]
api_access = true

[plans.dashboard-only]
monthly_credits_usd = 0
requests_per_minute = 10
tokens_per_minute = 1000
models = ["*"]
api_access = false
"""


def pytest_configure(config):
    os.environ["LUNOS_TEST_UPSTREAM_KEY"] = "upstream-secret"


def pytest_terminal_summary(terminalreporter):
    """One clear line per group of skipped tests, with the reason they were skipped."""
    reasons = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else "no reason given"
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"SKIPPED {count} tests: {reason}", yellow=True)


@pytest.fixture(scope="session")
def upstream():
    server = FakeUpstream()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream):
    upstream.reset()


@pytest.fixture(scope="session")
def catalog_path(upstream, tmp_path_factory):
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    path.write_text(CATALOG.format(url=upstream.url))
    return str(path)


@pytest.fixture(scope="session")
def plans_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plans") / "plans.toml"
    path.write_text(PLANS)
    return str(path)


def _postgres_url():
    url = os.environ.get("LUNOS_TEST_DATABASE_URL")
    if not url:
        pytest.skip("PostgreSQL run skipped: LUNOS_TEST_DATABASE_URL is not set")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    engine.dispose()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={PG_SCHEMA}')}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory, catalog_path, plans_path):
    """A migrated, empty database of each backend, once per session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'lunos.db'}"
    else:
        url = _postgres_url()
    app = create_app({"DATABASE_URL": url, "CATALOG": catalog_path, "PLANS": plans_path, "SECRET_KEY": "test-secret"})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def make_app(database_url, catalog_path, plans_path):
    apps = []

    def build(**overrides):
        settings = {
            "DATABASE_URL": database_url,
            "CATALOG": catalog_path,
            "PLANS": plans_path,
            "SECRET_KEY": "test-secret",
            "REDIS_URL": None,
            "RETRY_BACKOFF_S": 0.01,
            # Tests change keys and accounts behind the app's back: no cached key lookups.
            "KEY_CACHE_S": 0.0,
            "RETRY_AFTER_CAP_S": 2.0,
            "STREAM_KEEPALIVE_S": 5.0,
            "CONNECT_TIMEOUT_S": 1.0,
            # Most tests read an account's holds after its requests: each holds its own unless a
            # test asks for leases (tests/services/test_leases.py; every gunicorn keeps them on).
            "LEASE_S": 0.0,
            **overrides,
        }
        app = create_app(settings)
        app.config["TESTING"] = True
        with app.app_context(), contextlib.suppress(redis.RedisError):  # some tests point at no Redis
            limiter.reset()  # one limiter storage per process: start every test with fresh counts
        apps.append(app)
        return app

    yield build
    for app in apps:
        if app.config["DATABASE_URL"] != database_url:
            continue
        with app.app_context():
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
            db.engine.dispose()
        app.extensions["lunos"].http.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def account(app):
    with app.app_context():
        return accounts.create_account("acme", accounts.usd_to_micros("10")).id


@pytest.fixture
def api_key(app, account):
    """A fresh key's secret for the ``acme`` account."""
    with app.app_context():
        _key, secret = keys.create_key(db.session.get(Account, account), app.config["SECRET_KEY"])
    return secret


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def manager(app, account):
    """Headers of a management key of the ``acme`` account (billing, apps, account-wide usage)."""
    with app.app_context():
        _key, secret = keys.create_key(
            db.session.get(Account, account), app.config["SECRET_KEY"], name="ops", kind="management"
        )
    return {"Authorization": f"Bearer {secret}"}


def set_plan(app, account_id, plan, **columns):
    with app.app_context():
        db.session.execute(sa.update(Account).where(Account.id == account_id).values(plan=plan, **columns))
        db.session.commit()


def money(app, account_id):
    """(cached balance, ledger sum, reserved) of an account, in micro-USD."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        ledger = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_micros), 0)).where(
                LedgerEntry.account_id == account_id
            )
        )
        return account.balance_micros, int(ledger), account.reserved_micros


def reservations(app, account_id):
    """The account's reservations, {id: amount in micro-USD}: requests' own holds and leases."""
    with app.app_context():
        found = db.session.execute(
            sa.select(Reservation.id, Reservation.amount_micros).where(Reservation.account_id == account_id)
        ).all()
        db.session.rollback()
    return dict(found)


def usage_events(app, account_id=None):
    with app.app_context():
        query = sa.select(UsageEvent).order_by(UsageEvent.created_at)
        if account_id is not None:
            query = query.where(UsageEvent.account_id == account_id)
        events = db.session.scalars(query).all()
        db.session.expunge_all()
        return events


@pytest.fixture
def live_server(app):
    """The app on a real loopback HTTP server, for real clients (the openai SDK, raw sockets).
    Its requests finish (and settle) before the test's tables are emptied."""
    in_flight = InFlight(app)
    server = make_server("127.0.0.1", 0, in_flight, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    in_flight.wait_idle(timeout_s=15)
    stop(server)


ROOT = Path(__file__).resolve().parent.parent


def run_under_gevent(script):
    """Run ``script`` in a Python process of its own (it patches the standard library for
    gevent, which this one must not); fail with its output unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_env(app, database_url, catalog_path, plans_path):
    """The environment of a server process that serves this test's database, catalog and plans."""
    return {
        **os.environ,
        "LUNOS_DATABASE_URL": database_url,
        "LUNOS_CATALOG": catalog_path,
        "LUNOS_PLANS": plans_path,
        "LUNOS_SECRET_KEY": app.config["SECRET_KEY"],
    }


@pytest.fixture
def start_gunicorn(server_env, tmp_path_factory):
    """start(workers=1, **env) -> base URL of a gunicorn serving wsgi:app on this test's database."""
    processes = []

    def start(workers=1, **extra_env):
        port = free_port()
        # Small pools: every worker of every instance shares PostgreSQL's 100 connections.
        env = {
            **server_env,
            "LUNOS_STREAM_KEEPALIVE_S": "0.1",
            "LUNOS_WORKERS": str(workers),
            "LUNOS_DB_POOL_SIZE": "4",
            "LUNOS_DB_POOL_OVERFLOW": "4",
            "LUNOS_BIND": f"127.0.0.1:{port}",
            **extra_env,
        }
        # The error log goes to a file: a pipe nobody reads would fill and stall the server.
        log = tmp_path_factory.mktemp("gunicorn") / "error.log"
        with open(log, "wb") as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        process.error_log = log
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return base
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting
                time.sleep(0.1)
        process.kill()
        process.wait()
        pytest.fail("gunicorn did not become ready: " + log.read_text()[-2000:])

    start.processes = processes
    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("browser test skipped: chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
