"""Typed settings: embedded defaults, then LUNOS_* environment variables, then a test mapping.

Bad values stop start-up with a message naming the variable.
"""

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from lunos.return_urls import ReturnUrls, parse_hosts, parse_public_url

SHIPPED_CATALOG = Path(__file__).with_name("catalog.toml")
SHIPPED_PLANS = Path(__file__).with_name("plans.toml")


class ConfigError(Exception):
    pass


def _bool(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value < 0:
            raise ValueError("must not be negative")
        return value

    return parse


ORIGIN = re.compile(r"https?://[^/?#\s,]+")


def _database_url(text):
    """A SQLAlchemy URL of a backend Lunos supports: SQLite or PostgreSQL (psycopg 3)."""
    if not text.startswith(("sqlite:", "sqlite+pysqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
        raise ValueError(f"Lunos runs on sqlite:/// or postgresql:// URLs, not {text.split(':', 1)[0]!r}")
    return text


def _origins(text):
    """``*`` (any origin), ``none`` (no CORS at all: an empty tuple) or a comma-separated list
    of origins as browsers send them (``https://app.example.com``, a port when not the default)."""
    origins = tuple(part.strip().lower().rstrip("/") for part in text.split(",") if part.strip())
    if origins in (("*",), ("none",)):
        return () if origins == ("none",) else origins
    bad = [origin for origin in origins if not ORIGIN.fullmatch(origin)]
    if bad or not origins:
        raise ValueError(
            f"expected '*', 'none' or a comma-separated list of origins such as "
            f"https://app.example.com, got {(bad or [text])[0]!r}"
        )
    return origins


def _between_float(low, high):
    def parse(text):
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low:g} to {high:g}")
        return value

    return parse


def _int_between(low, high):
    def parse(text):
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    parse: object
    default: object
    help: str


SETTINGS = [
    Setting("DATABASE_URL", _database_url, None, "SQLAlchemy URL; default sqlite under instance/"),
    Setting("DB_POOL_SIZE", _positive(int), 10, "database connections kept open per worker"),
    Setting("DB_POOL_OVERFLOW", _positive(int), 10, "extra connections a worker may open under load"),
    Setting("REDIS_URL", str, None, "Redis URL for shared state (rate limits); optional"),
    Setting("KEY_CACHE_S", _between_float(0.0, 1.0), 1.0, "how long a worker keeps a key's lookup (at most 1 s)"),
    Setting("REDIS_POOL_SIZE", _positive(int), 50, "Redis connections per worker; more wait for one"),
    Setting("CATALOG", str, str(SHIPPED_CATALOG), "path of the TOML model catalog"),
    Setting("SECRET_KEY", str, None, "server secret for key hashing; default: generated in instance/"),
    Setting("MAX_BODY_BYTES", _positive(int), 10 * 1024 * 1024, "largest request body accepted"),
    # What one request may carry, far above real use; the encoders nest at most 254 levels.
    Setting("MAX_JSON_DEPTH", _int_between(16, 200), 128, "deepest nesting of a JSON body"),
    Setting("MAX_MESSAGES", _int_between(1, 1_000_000), 10_000, "most messages in one chat request"),
    Setting("MAX_CONTENT_PARTS", _int_between(1, 1_000_000), 1_000, "most content parts in one message"),
    Setting("UPSTREAM_MAX_RETRIES", _positive(int), 2, "retries per candidate model"),
    Setting("RETRY_BACKOFF_S", _positive(float), 0.5, "base of the jittered exponential backoff"),
    Setting("RETRY_AFTER_CAP_S", _positive(float), 10.0, "longest Retry-After honoured"),
    Setting("CONNECT_TIMEOUT_S", _positive(float), 10.0, "upstream connect timeout"),
    Setting("STREAM_KEEPALIVE_S", _positive(float), 15.0, "keep-alive comment interval on silent streams"),
    Setting("UPSTREAM_POOL_SIZE", _positive(int), 1000, "pooled upstream connections per host"),
    Setting("CORS_ORIGINS", _origins, ("*",), "origins browsers may call /v1 from: '*', 'none' or a list"),
    Setting("ADMIN_TOKEN", str, None, "bearer token of the /admin API; unset: no admin API"),
    Setting("COOKIE_SECURE", _bool, False, "mark the dashboard cookie Secure (set it behind TLS)"),
    Setting("PLANS", str, str(SHIPPED_PLANS), "path of the TOML plans file"),
    Setting("LOW_BALANCE_USD", _positive(float), 1.0, "balance under which /v1/balance flags low"),
    Setting("PAST_DUE_GRACE_DAYS", _positive(float), 3.0, "days a past-due subscription keeps its plan"),
    Setting("STRIPE_API_BASE", str, "https://api.stripe.com", "Stripe API base (tests point it at a fake)"),
    Setting("TOPUP_MIN_USD", _positive(float), 5.0, "smallest credit top-up"),
    Setting("TOPUP_MAX_USD", _positive(float), 10000.0, "largest credit top-up"),
    Setting(
        "PUBLIC_URL",
        parse_public_url,
        "http://127.0.0.1:8000",
        "the gateway's base URL as browsers reach it; Stripe sends users back only there (or below)",
    ),
    Setting("BILLING_RETURN_HOSTS", parse_hosts, (), "other hosts (host or host:port) a billing return_url may name"),
    Setting("BILLING_RETURN_URL", str, None, "where Checkout and the Portal send users back; default PUBLIC_URL/"),
    Setting("SPOOL_DIR", str, None, "where settlements wait while the database is away; default instance/"),
    Setting("HEARTBEAT_S", _positive(float), 15.0, "how often a worker proves its holds alive"),
    Setting("LEASE_S", _between_float(0.0, 60.0), 2.0, "seconds of an account's demand a worker leases; 0: no leases"),
    Setting("AUTO_MIGRATE", _bool, True, "migrate the schema when the development server starts"),
    # gunicorn.conf.py reads it too, for the workers; gevent cannot time waits much over 9e9 s.
    Setting("GRACEFUL_TIMEOUT_S", _int_between(1, 10**9), 600, "how long a stop lets the answers under way finish"),
    Setting("LOG_LEVEL", str, "INFO", "logging level"),
]


STRIPE_SETTINGS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


def load_settings(environ=None, overrides=None):
    """Return {name: value}; raise ConfigError naming the first bad variable."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values = {}
    for setting in SETTINGS:
        if setting.name in overrides:
            values[setting.name] = overrides[setting.name]
            continue
        raw = environ.get("LUNOS_" + setting.name)
        if raw is None or raw == "":
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"LUNOS_{setting.name}={raw!r}: {exc}") from None
    for name in STRIPE_SETTINGS:  # Stripe's own variable names, unprefixed
        values[name] = overrides.get(name, environ.get(name) or None)
    _check_return_urls(values)
    return values


def _check_return_urls(values):
    """The default billing return URL must be one Stripe may send users to (lunos/return_urls.py)."""
    hosts = values["BILLING_RETURN_HOSTS"]
    if isinstance(hosts, str):  # a test mapping may give the variable's text
        try:
            values["BILLING_RETURN_HOSTS"] = parse_hosts(hosts)
        except ValueError as exc:
            raise ConfigError(f"LUNOS_BILLING_RETURN_HOSTS={hosts!r}: {exc}") from None
    try:
        values["PUBLIC_URL"] = parse_public_url(values["PUBLIC_URL"])  # a test mapping's value too
        allowed = ReturnUrls(values["PUBLIC_URL"], values["BILLING_RETURN_HOSTS"])
    except ValueError as exc:
        raise ConfigError(f"LUNOS_PUBLIC_URL={values['PUBLIC_URL']!r}: {exc}") from None
    if values["BILLING_RETURN_URL"] is None:
        values["BILLING_RETURN_URL"] = values["PUBLIC_URL"].rstrip("/") + "/"
    try:
        allowed.check(values["BILLING_RETURN_URL"])
    except ValueError as exc:
        raise ConfigError(f"LUNOS_BILLING_RETURN_URL={values['BILLING_RETURN_URL']!r}: {exc}") from None


def database_uri(url, instance_path):
    if not url:
        return "sqlite:///" + str(Path(instance_path) / "lunos.db")
    # SQLAlchemy picks psycopg2 for a bare postgresql:// URL; the stack uses psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def instance_secret(instance_path):
    """A secret generated once and kept under instance/, for installs that set none."""
    path = Path(instance_path) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".secret_key.{os.getpid()}")
    draft.write_text(secrets.token_urlsafe(48))
    os.chmod(draft, 0o600)
    try:
        os.link(draft, path)  # atomic: of two processes starting together, one secret wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")
