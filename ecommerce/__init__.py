"""The e-commerce API: ``create_app`` reads like a table of contents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from flask import Flask, current_app, send_from_directory
from flask.sessions import SessionInterface
from swagger_ui_bundle import swagger_ui_path
from werkzeug.routing import IntegerConverter

from ecommerce.config import INSTANCE_DIR, Config, ProductionConfig, config_from_env
from ecommerce.core.cache.store import REDIS_OPTIONS, init_local_cache
from ecommerce.core.db.after_commit import install_after_commit
from ecommerce.core.db.engine import init_database
from ecommerce.core.db.failover import dispatch_with_retry
from ecommerce.core.events import init_events
from ecommerce.core.logs import configure_logging
from ecommerce.core.media import MEDIA_MAX_AGE, init_media
from ecommerce.core.ratelimit import init_limits
from ecommerce.core.schemas import Money
from ecommerce.errors import register_error_handlers
from ecommerce.extensions import api, cache, client_ip, db, jwt, limiter, metrics, migrate, request_metrics
from ecommerce.middleware import register_middleware
from ecommerce.payments.gateway import init_gateway
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
        """The view as one unit of work: rolled back if it raises, run again while the database
        fails over if nothing was committed yet (ecommerce/core/db/failover.py)."""
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
    with app.app_context():  # the OpenAPI document reads settings (the password's minLength)
        register_blueprints(app)
    register_error_handlers(app)
    register_middleware(app)
    register_cli(app)
    return app


def _configure_stores(app: Flask) -> None:
    redis_url = app.config.get("REDIS_URL")
    if redis_url:
        if app.config.get("CACHE_TYPE") in (None, "RedisCache"):
            # Flask-Caching's RedisCache on the catalog cache's own client (core/cache/store.py).
            app.config["CACHE_TYPE"] = "ecommerce.core.cache.store.redis_cache"
        app.config.setdefault("CACHE_REDIS_URL", redis_url)
        app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url)
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", dict(REDIS_OPTIONS))
        app.extensions["redis"] = redis.Redis.from_url(redis_url, **REDIS_OPTIONS)
    else:
        app.config["CACHE_TYPE"] = app.config.get("CACHE_TYPE") or "SimpleCache"
        app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    # A key already gone when a purge deletes it (another purge won the race) is no error.
    app.config.setdefault("CACHE_IGNORE_ERRORS", True)
    # A dead Redis must not turn requests into 500s: limits fall back to process memory.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)


def register_extensions(app: Flask) -> None:
    _configure_stores(app)
    init_database(app)
    install_after_commit()
    migrate.init_app(app, db, render_as_batch=True, compare_type=True)
    api.init_app(app)
    api.register_converter(BoundedIntConverter, lambda converter: {"type": "integer", "minimum": 0})
    api.register_field(Money, "string", "decimal")  # "19.99" on the wire, as documented
    jwt.init_app(app)
    cache.init_app(app)
    init_local_cache(app)
    init_limits(app, limiter, app.extensions.get("redis"), client=client_ip)
    metrics.init_app(app)
    request_metrics.init_app(app)
    init_gateway(app)
    configure_queue(app)
    init_events(app)
    init_media(app)


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
        shipping,
        users,
        wishlists,
    )

    for package in (
        health,
        auth,
        users,
        categories,
        products,
        reviews,
        carts,
        wishlists,
        orders,
        payments,
        shipping,
    ):
        api.register_blueprint(package.blp)
    app.add_url_rule("/api/docs/assets/<path:filename>", "swagger_ui_assets", _swagger_ui_asset)
    if app.config["SERVE_MEDIA"]:
        # Product pictures from the local media storage (ecommerce/core/media/); nginx serves
        # them itself in the stack.
        app.add_url_rule("/media/<path:filename>", "media", _media_file)
    if app.config["SERVE_STOREFRONT"]:
        # The static shop at / (a client of the API like any other); nginx serves it in the stack.
        app.add_url_rule("/", "storefront", _storefront_page)
        app.add_url_rule("/assets/<path:filename>", "storefront_assets", _storefront_asset)


def _swagger_ui_asset(filename: str):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


def _storefront_page():
    # Revalidated on every visit (an ETag makes it a 304): a new release is seen at once.
    return send_from_directory(current_app.config["STOREFRONT_DIR"], "index.html", max_age=0)


def _storefront_asset(filename: str):
    return send_from_directory(Path(current_app.config["STOREFRONT_DIR"]) / "assets", filename, max_age=300)


def _media_file(filename: str):
    # Names are content hashes: a file never changes under its name, so caches may keep it.
    response = send_from_directory(current_app.config["MEDIA_ROOT"], filename, max_age=MEDIA_MAX_AGE)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def register_cli(app: Flask) -> None:
    from ecommerce.cli import register_commands

    register_commands(app)
