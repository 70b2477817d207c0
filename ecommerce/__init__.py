"""The e-commerce API: ``create_app`` reads like a table of contents."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, send_from_directory
from flask.sessions import SessionInterface
from sqlalchemy import event
from swagger_ui_bundle import swagger_ui_path
from werkzeug.routing import IntegerConverter

from ecommerce.config import INSTANCE_DIR, Config, ProductionConfig, config_from_env
from ecommerce.core.cache import init_local_cache
from ecommerce.core.failover import dispatch_with_retry, init_failover, ping_idle_connections
from ecommerce.core.logs import configure_logging
from ecommerce.core.metrics import instrument_pool
from ecommerce.core.payment_gateway import init_gateway
from ecommerce.core.replicas import REPLICA_BIND, configure_replica, init_replicas, reads_in_autocommit
from ecommerce.core.schemas import Money
from ecommerce.errors import register_error_handlers
from ecommerce.extensions import api, cache, db, jwt, limiter, metrics, migrate
from ecommerce.middleware import register_middleware
from ecommerce.tasks import configure_queue

MAX_DB_INT = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` that never accepts an id the database column cannot hold (a 404, not a 500)."""

    def __init__(self, map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_DB_INT)
        super().__init__(map, *args, **kwargs)


class NoCookieSessions(SessionInterface):
    """The API authenticates every request with a bearer token and keeps no cookie session:
    nothing is signed or verified per request, and no Set-Cookie ever leaves."""

    def open_session(self, app: Flask, request: Any) -> Any:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


class App(Flask):
    def dispatch_request(self) -> Any:
        """The view, run again while the database fails over, if nothing was committed yet."""
        return dispatch_with_retry(super().dispatch_request)


def create_app(config: type[Config] | None = None, **overrides: Any) -> Flask:
    config = config or config_from_env()
    app = App(__name__, instance_path=str(INSTANCE_DIR))
    app.session_interface = NoCookieSessions()
    app.config.from_object(config)
    app.config.update(overrides)
    if issubclass(config, ProductionConfig):
        config.validate(app.config)  # the secrets it will run with, overrides included
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_JSON"])

    app.json.sort_keys = False  # fields in schema order
    app.url_map.strict_slashes = False
    app.url_map.converters["int"] = BoundedIntConverter

    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_middleware(app)
    register_cli(app)
    return app


def _database_options(app: Flask) -> dict[str, Any]:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    # SQL parameters (password hashes, emails) stay out of DEBUG logs and error messages.
    if uri.startswith("sqlite"):
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        return {"connect_args": {"timeout": 30}, "hide_parameters": True}
    return {
        "hide_parameters": True,
        "pool_size": app.config["DB_POOL_SIZE"],
        "max_overflow": app.config["DB_MAX_OVERFLOW"],
        "pool_timeout": app.config["DB_POOL_TIMEOUT"],
        "pool_pre_ping": False,  # ping_idle_connections: only connections that sat idle
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": 5,
            "application_name": "ecommerce",
            "options": f"-c statement_timeout={app.config['DB_STATEMENT_TIMEOUT_MS']}",
        },
    }


def _configure_stores(app: Flask) -> None:
    redis_url = app.config.get("REDIS_URL")
    redis_options = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}
    if redis_url:
        app.config["CACHE_TYPE"] = app.config.get("CACHE_TYPE") or "RedisCache"
        app.config.setdefault("CACHE_REDIS_URL", redis_url)
        app.config.setdefault("CACHE_OPTIONS", dict(redis_options))
        app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url)
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", dict(redis_options))
        app.extensions["redis"] = redis.Redis.from_url(redis_url, **redis_options)
    else:
        app.config["CACHE_TYPE"] = app.config.get("CACHE_TYPE") or "SimpleCache"
        app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    # A dead Redis must not turn requests into 500s: limits fall back to process memory.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)


def register_extensions(app: Flask) -> None:
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", _database_options(app))
    _configure_stores(app)
    configure_replica(app, app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    api.init_app(app)
    api.register_converter(BoundedIntConverter, lambda converter: {"type": "integer", "minimum": 0})
    api.register_field(Money, "string", "decimal")  # "19.99" on the wire, as documented
    jwt.init_app(app)
    cache.init_app(app)
    init_local_cache(app)
    limiter.init_app(app)
    metrics.init_app(app)
    init_gateway(app)
    configure_queue(app)
    init_replicas(app)
    init_failover(app)
    with app.app_context():
        instrument_pool(db.engine)
        if REPLICA_BIND in db.engines:
            instrument_pool(db.engines[REPLICA_BIND])
        if db.engine.dialect.name == "postgresql":
            for engine in db.engines.values():
                ping_idle_connections(engine, app.config["DB_PING_IDLE_SECONDS"])
                if app.config["READS_IN_AUTOCOMMIT"]:
                    reads_in_autocommit(engine)
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys (and their ON DELETE rules) are off in SQLite unless asked for.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def register_blueprints(app: Flask) -> None:
    from ecommerce import (
        auth,
        carts,
        categories,
        health,
        orders,
        payments,
        products,
        reviews,
        users,
        wishlists,
    )

    for package in (health, auth, users, categories, products, reviews, carts, wishlists, orders, payments):
        api.register_blueprint(package.blp)
    app.add_url_rule("/api/docs/assets/<path:filename>", "swagger_ui_assets", _swagger_ui_asset)


def _swagger_ui_asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


def register_cli(app: Flask) -> None:
    from ecommerce.cli import register_commands

    register_commands(app)
