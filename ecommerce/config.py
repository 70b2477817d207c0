"""Configuration, read from the environment once (12-factor).

Every setting has an embedded default so that a bare ``make run`` works: SQLite in
``instance/``, an in-process cache and rate-limit store. Setting ``DATABASE_URL`` and
``REDIS_URL`` switches to PostgreSQL and Redis.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_PATH", PROJECT_ROOT / "instance"))

# prometheus_client reads this variable itself; it must be set before the first import.
METRICS_MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

DEV_SECRET = "dev-only-secret-change-me-in-production-0123456789"


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    return int(value) if value is not None else default


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    return float(value) if value is not None else default


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """The SQLAlchemy URL of a database URL as operators write it.

    PostgreSQL URLs are pinned to psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for a bare
    ``postgresql://``), the ``postgres://`` spelling is accepted, and libpq's multi-host form
    ``postgresql://user@h1:5433,h2:5434/db?target_session_attrs=read-write`` (the form libpq's
    own tools take) becomes SQLAlchemy's ``?host=h1:5433&host=h2:5434`` spelling of it.
    """
    for scheme in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(scheme):
            return _multi_host_as_query("postgresql+psycopg2://" + url[len(scheme) :])
    return url


def _multi_host_as_query(url: str) -> str:
    scheme, rest = url.split("://", 1)
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    if "," not in hostlist:
        return url
    path, question, query = tail.partition("?")
    hosts = "&".join("host=" + quote(host, safe=":[]") for host in hostlist.split(",") if host)
    query = hosts + ("&" + query if query else "")
    return f"{scheme}://{userinfo}{at}/{path}?{query}"


def libpq_url(sqlalchemy_url: str) -> str:
    """The libpq connection URI of a PostgreSQL SQLAlchemy URL (for pg_dump, pg_restore, psql):
    the driver suffix dropped, every ``host=`` query parameter back in the host list."""
    parts = urlsplit(sqlalchemy_url)
    scheme = parts.scheme.split("+", 1)[0]
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in query if key == "host"]
    others = [(key, value) for key, value in query if key != "host"]
    netloc = parts.netloc
    if hosts:
        userinfo = netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + ",".join(hosts)
    return urlunsplit((scheme, netloc, parts.path, urlencode(others, safe=":/,"), ""))


class Config:
    """Production-shaped defaults, overridable from the environment."""

    TESTING = False
    DEBUG = False

    SECRET_KEY = env_str("SECRET_KEY", DEV_SECRET)
    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY", SECRET_KEY)
    # How long a worker may trust a login it has checked (not revoked or expired, the user
    # active) without asking the database again. 0: every request asks. A login revoked through
    # another process, or a user deactivated, is refused there within this many seconds.
    LOGIN_CHECK_SECONDS = env_float("LOGIN_CHECK_SECONDS", 0.0)

    # Database: SQLite in instance/ unless DATABASE_URL says otherwise.
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        env_str("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'ecommerce.db'}")
    )
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    DB_POOL_SIZE = env_int("DB_POOL_SIZE", 20)
    DB_MAX_OVERFLOW = env_int("DB_MAX_OVERFLOW", 0)
    DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 10)
    DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 15000)
    # Checkouts of one process that arrive while one is being placed go together in the next
    # call of place_orders() (PostgreSQL), at most this many (orders/batching.py); 1: one each.
    # At most 32: each member is a subtransaction, and a backend keeps 64 of them in memory.
    CHECKOUT_BATCH_MAX = min(32, env_int("CHECKOUT_BATCH_MAX", 32))
    # A pooled connection idle this long is pinged (SELECT 1) before use; busier ones are not.
    DB_PING_IDLE_SECONDS = env_float("DB_PING_IDLE_SECONDS", 1.0)
    # GET/HEAD requests run their statements in autocommit (no BEGIN/ROLLBACK round trips).
    READS_IN_AUTOCOMMIT = env_bool("READS_IN_AUTOCOMMIT", True)
    # Reads that may be slightly stale (catalog on a cache miss, review lists, an admin's view
    # of other users' orders) go here: a standby, e.g. a multi-host URL with
    # target_session_attrs=prefer-standby. Unset: every read goes to DATABASE_URL.
    _replica_url = env_str("DATABASE_REPLICA_URL")
    SQLALCHEMY_REPLICA_URI = normalise_database_url(_replica_url) if _replica_url else None
    # How long a write's WAL position is kept for read-your-writes (longer than any replica lag
    # worth serving reads from; after it, a reader no longer waits for that write).
    READ_YOUR_WRITES_TTL = env_int("READ_YOUR_WRITES_TTL", 300)
    # A request that lost the database before committing anything is run again for this long
    # (a Patroni switchover takes about 3 s), then answered 503 with Retry-After.
    DB_RETRY_SECONDS = float(env_str("DB_RETRY_SECONDS", "3") or 3)

    # Backups (`flask db backup`, `restore`, `drill`): where dumps are written by default, and
    # the directory of pg_dump and pg_restore (unset: the newest /usr/lib/postgresql/*/bin that
    # has both, else PATH; a pg_dump older than the server refuses to dump it).
    BACKUP_DIR = env_str("BACKUP_DIR", str(INSTANCE_DIR / "backups"))
    PG_BIN_DIR = env_str("PG_BIN_DIR")

    # Redis: cache and rate-limit storage. Absent -> in-process stores.
    REDIS_URL = env_str("REDIS_URL")
    # Normally derived from REDIS_URL (RedisCache, else SimpleCache); NullCache turns caching off.
    CACHE_TYPE = env_str("CACHE_TYPE")
    CACHE_DEFAULT_TIMEOUT = env_int("CACHE_DEFAULT_TIMEOUT", 300)
    CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "ecommerce:")
    PRODUCT_CACHE_TIMEOUT = env_int("PRODUCT_CACHE_TIMEOUT", 300)
    PRODUCT_LIST_CACHE_TIMEOUT = env_int("PRODUCT_LIST_CACHE_TIMEOUT", 60)
    # The shipping quote table of the whole carrier network: every write to a zone or a leg
    # purges it after its commit, so it may be kept long; it expires only to bound the damage of
    # a purge that failed.
    SHIPPING_QUOTE_CACHE_TIMEOUT = env_int("SHIPPING_QUOTE_CACHE_TIMEOUT", 3600)
    # Each worker's own copy of hot catalog entries, invalidated by Redis (0 turns it off).
    LOCAL_CACHE_SECONDS = env_int("LOCAL_CACHE_SECONDS", 60)
    LOCAL_CACHE_MAX_ENTRIES = env_int("LOCAL_CACHE_MAX_ENTRIES", 10000)

    # Auth
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=env_int("JWT_ACCESS_TOKEN_EXPIRES", 15 * 60))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=env_int("JWT_REFRESH_TOKEN_EXPIRES", 30 * 24 * 3600))
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ERROR_MESSAGE_KEY = "detail"
    PASSWORD_MIN_LENGTH = env_int("PASSWORD_MIN_LENGTH", 8)
    PASSWORD_HASH_TIME_COST = env_int("PASSWORD_HASH_TIME_COST", 3)
    PASSWORD_HASH_MEMORY_KIB = env_int("PASSWORD_HASH_MEMORY_KIB", 65536)
    PASSWORD_HASH_PARALLELISM = env_int("PASSWORD_HASH_PARALLELISM", 2)

    # Rate limits. Flask-Limiter reads RATELIMIT_* itself for the routes' own limits (login,
    # registration); RATELIMIT_DEFAULT, on every route, is counted by core/ratelimit.py.
    AUTH_RATE_LIMIT = env_str("AUTH_RATE_LIMIT", "10/minute")
    RATELIMIT_DEFAULT = env_str("RATELIMIT_DEFAULT")
    RATELIMIT_SYNC_SECONDS = env_float("RATELIMIT_SYNC_SECONDS", 0.1)
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_STRATEGY = env_str("RATELIMIT_STRATEGY", "moving-window")
    RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX", "ecommerce-rl")

    # Background jobs (Huey): Redis when REDIS_URL is set, else a SQLite queue in instance/.
    HUEY_NAME = env_str("HUEY_NAME", "ecommerce")
    HUEY_SQLITE_PATH = env_str("HUEY_SQLITE_PATH", str(INSTANCE_DIR / "huey.db"))
    # A payment, refund or email still not done after this long is handed to a worker again.
    JOB_SWEEP_AFTER_SECONDS = env_int("JOB_SWEEP_AFTER_SECONDS", 180)
    WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
    # 127.0.0.1 on a host; in a container, its own address (0.0.0.0) so Prometheus can scrape it.
    WORKER_METRICS_HOST = env_str("WORKER_METRICS_HOST", "127.0.0.1")

    # Payments: the provider behind ecommerce/payments/gateway.py.
    PAYMENT_GATEWAY = env_str("PAYMENT_GATEWAY", "sandbox")
    SANDBOX_GATEWAY_PATH = env_str("SANDBOX_GATEWAY_PATH", str(INSTANCE_DIR / "sandbox_gateway.db"))

    # Mail: SMTP when MAIL_SERVER is set, else .eml files in MAIL_FOLDER.
    MAIL_SERVER = env_str("MAIL_SERVER")
    MAIL_PORT = env_int("MAIL_PORT", 25)
    MAIL_SENDER = env_str("MAIL_SENDER", "Shop <no-reply@shop.example>")
    MAIL_USERNAME = env_str("MAIL_USERNAME")
    MAIL_PASSWORD = env_str("MAIL_PASSWORD")
    MAIL_USE_STARTTLS = env_bool("MAIL_USE_STARTTLS", False)
    MAIL_TIMEOUT = env_int("MAIL_TIMEOUT", 10)
    MAIL_FOLDER = env_str("MAIL_FOLDER", str(INSTANCE_DIR / "mail"))

    # Live events (Server-Sent Events, ecommerce/core/events/): a comment line this often keeps
    # an idle stream open through proxies; at most one stock event per product this often; a
    # worker holds at most EVENTS_MAX_STREAMS streams (one more is 503 with Retry-After), so
    # streams never take the connections that ordinary requests need (gunicorn's
    # WORKER_CONNECTIONS is sized above it).
    EVENTS_HEARTBEAT_SECONDS = env_float("EVENTS_HEARTBEAT_SECONDS", 15.0)
    EVENTS_STOCK_INTERVAL_SECONDS = env_float("EVENTS_STOCK_INTERVAL_SECONDS", 1.0)
    EVENTS_MAX_STREAMS = env_int("EVENTS_MAX_STREAMS", 3000)
    # Without Redis (the embedded default), events of other processes (the worker's payments)
    # are read from the order_events table this often while an order stream is open.
    EVENTS_POLL_SECONDS = env_float("EVENTS_POLL_SECONDS", 0.5)
    # The Redis pub/sub channel of change notices (default: CACHE_KEY_PREFIX + "events").
    EVENTS_CHANNEL = env_str("EVENTS_CHANNEL")

    # The storefront (storefront/): served at / by the app; in the stack nginx serves it.
    STOREFRONT_DIR = env_str("STOREFRONT_DIR", str(PROJECT_ROOT / "storefront"))
    SERVE_STOREFRONT = env_bool("SERVE_STOREFRONT", True)

    # Product pictures (ecommerce/core/media/): stored by MEDIA_STORAGE ("local": files under
    # MEDIA_ROOT) and fetched by clients at MEDIA_URL + name (a CDN's address, or /media/,
    # served by nginx in the stack and by the app when SERVE_MEDIA is on). An upload may be at
    # most MEDIA_MAX_BYTES and MEDIA_MAX_PIXELS (checked before decoding); it is stored bounded
    # to MEDIA_MAX_EDGE pixels a side, with a thumbnail of MEDIA_THUMBNAIL_EDGE, and a product
    # holds at most MEDIA_MAX_IMAGES of them.
    MEDIA_STORAGE = env_str("MEDIA_STORAGE", "local")
    # Absolute: the app serves from it and the storage writes to it, whatever the working folder.
    MEDIA_ROOT = os.path.abspath(env_str("MEDIA_ROOT", str(INSTANCE_DIR / "media")))
    MEDIA_URL = env_str("MEDIA_URL", "/media/")
    SERVE_MEDIA = env_bool("SERVE_MEDIA", True)
    MEDIA_MAX_BYTES = env_int("MEDIA_MAX_BYTES", 10 * 1024 * 1024)
    MEDIA_MAX_PIXELS = env_int("MEDIA_MAX_PIXELS", 40_000_000)
    MEDIA_MAX_EDGE = env_int("MEDIA_MAX_EDGE", 2048)
    MEDIA_THUMBNAIL_EDGE = env_int("MEDIA_THUMBNAIL_EDGE", 400)
    MEDIA_MAX_IMAGES = env_int("MEDIA_MAX_IMAGES", 12)
    # Pictures one worker process makes at once (in threads, beside its requests); more wait.
    MEDIA_PICTURE_THREADS = env_int("MEDIA_PICTURE_THREADS", 2)

    # HTTP
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    CORS_ORIGINS = [o.strip() for o in (env_str("CORS_ORIGINS", "") or "").split(",") if o.strip()]
    TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
    LOG_JSON = env_bool("LOG_JSON", True)

    # OpenAPI (flask-smorest)
    API_TITLE = "E-commerce API"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs/"
    # Swagger UI's assets are served by the app itself (swagger-ui-bundle), not a CDN.
    OPENAPI_SWAGGER_UI_URL = "/api/docs/assets/"
    API_SPEC_OPTIONS = {
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    }

    @classmethod
    def uses_redis(cls) -> bool:
        return bool(cls.REDIS_URL)


class DevelopmentConfig(Config):
    DEBUG = env_bool("FLASK_DEBUG", False)


class TestingConfig(Config):
    TESTING = True
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        env_str("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_test")
    )
    REDIS_URL = env_str("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    CACHE_KEY_PREFIX = env_str("TEST_CACHE_KEY_PREFIX", "ecommerce-test:")
    RATELIMIT_KEY_PREFIX = "ecommerce-test-rl"
    SECRET_KEY = "testing-secret-key-that-is-long-enough-0123456789"
    JWT_SECRET_KEY = "testing-jwt-secret-key-that-is-long-enough-0123456789"
    # Rate limits are exercised by their own tests with an app made for them.
    AUTH_RATE_LIMIT = "1000/minute"
    LOG_JSON = False
    LOG_LEVEL = env_str("TEST_LOG_LEVEL", "WARNING")
    SANDBOX_GATEWAY_PATH = env_str("TEST_SANDBOX_GATEWAY_PATH", "/tmp/ecommerce-test-sandbox-gateway.db")
    MAIL_SERVER = None
    MAIL_FOLDER = env_str("TEST_MAIL_FOLDER", "/tmp/ecommerce-test-mail")
    MEDIA_ROOT = env_str("TEST_MEDIA_ROOT", "/tmp/ecommerce-test-media")
    # Cheap hashes keep the suite fast; production keeps argon2's defaults.
    PASSWORD_HASH_TIME_COST = 1
    PASSWORD_HASH_MEMORY_KIB = 1024
    PASSWORD_HASH_PARALLELISM = 1


class ProductionConfig(Config):
    """Refuses to start with a default or short secret."""

    MIN_SECRET_LENGTH = 32

    @classmethod
    def validate(cls, settings: Mapping[str, Any] | None = None) -> None:
        """Raise unless both secrets are long and not the development value; ``settings`` are
        the values the app will run with (the class's own by default)."""
        for name in ("SECRET_KEY", "JWT_SECRET_KEY"):
            value = (settings[name] if settings is not None else getattr(cls, name)) or ""
            if value == DEV_SECRET or len(value) < cls.MIN_SECRET_LENGTH:
                raise RuntimeError(
                    f"{name} must be set to a random value of at least "
                    f"{cls.MIN_SECRET_LENGTH} characters in production"
                )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    return CONFIGS[env_str("APP_ENV", "development")]
