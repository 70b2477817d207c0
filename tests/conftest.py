"""Test fixtures.

The schema is built once per run by the real migrations on PostgreSQL (``TEST_DATABASE_URL``,
default: a database ``ecommerce_test`` on 127.0.0.1:5432, created here), with Redis on
``TEST_REDIS_URL`` (default: database 15 of 127.0.0.1:6379, flushed before every test).

- API tests use ``client``: every test runs inside one transaction that is rolled back.
- Integration tests use ``committed``: data is really committed (several connections, threads,
  other app instances see it) and every table is truncated afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from flask import Flask, has_request_context, request, request_tearing_down
from flask.globals import app_ctx
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from sqlalchemy.orm import scoped_session

from ecommerce import create_app
from ecommerce.config import TestingConfig
from ecommerce.extensions import db
from tests.factories import AdminFactory, UserFactory
from tests.helpers import bearer, login, recreate_database, truncate_every_table


@pytest.fixture(scope="session")
def app() -> Iterator[Flask]:
    recreate_database(TestingConfig.SQLALCHEMY_DATABASE_URI)
    application = create_app(TestingConfig)
    with application.app_context():
        upgrade(directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def redis_client(app: Flask) -> redis.Redis:
    return redis.Redis.from_url(app.config["REDIS_URL"])


@pytest.fixture(autouse=True)
def _clean_redis(redis_client: redis.Redis) -> None:
    # Database 15 (by default) belongs to the tests alone: cache entries and rate-limit
    # counters never leak from one test into the next.
    redis_client.flushdb()


class ConnectionBoundSession(FlaskSQLAlchemySession):
    """Flask-SQLAlchemy's session picks the engine itself and ignores ``bind``; this one uses
    the test's connection, so everything the test does stays inside its outer transaction."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind if bind is not None else self.bind


def _request_or_app_context_id() -> int:
    # The test client reuses the app context the test pushed, so without this every request of
    # a test would share the test's session (and its identity map). In production each request
    # has a session of its own; here too.
    if has_request_context():
        return id(request._get_current_object())
    return id(app_ctx._get_current_object())


@pytest.fixture
def db_transaction(app: Flask) -> Iterator[None]:
    """Run the test inside one outer transaction that is rolled back at the end.

    Every request still gets its own session (removed when the request ends), as in production;
    all of them, and the test's own, work on the test's connection inside savepoints.
    """
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        factory = db._make_session_factory(
            {
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
                "expire_on_commit": False,  # as the app's own sessions
                "class_": ConnectionBoundSession,
            }
        )
        db.session = scoped_session(factory, scopefunc=_request_or_app_context_id)

        def end_request_session(sender, **extra):
            db.session.remove()

        request_tearing_down.connect(end_request_session, app)
        try:
            yield
        finally:
            request_tearing_down.disconnect(end_request_session, app)
            db.session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def client(app: Flask, db_transaction: None):
    return app.test_client()


@pytest.fixture
def committed(app: Flask) -> Iterator[None]:
    """Let the test commit for real; empty every table afterwards."""
    yield
    with app.app_context():
        truncate_every_table()


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.fixture
def user(client):
    return UserFactory()


@pytest.fixture
def admin(client):
    return AdminFactory()


@pytest.fixture
def user_headers(client, user) -> dict[str, str]:
    return bearer(login(client, user.username)["access_token"])


@pytest.fixture
def admin_headers(client, admin) -> dict[str, str]:
    return bearer(login(client, admin.username)["access_token"])


@pytest.fixture
def build_app(app: Flask):
    """Build extra app instances: each is its own ``create_app(TestingConfig, **overrides)`` (own
    engine and pool) on the same PostgreSQL database and Redis db, as a second server would be.

    Flask-Limiter is one extension object shared by every app in the process: a default limit
    set by one app stays set, and its storage follows the app bound last. Both go back to the
    session app's afterwards, and so does the logging that ``create_app`` configures."""
    from ecommerce.core.logs import configure_logging
    from ecommerce.extensions import limiter

    built: list[Flask] = []

    def build(**overrides) -> Flask:
        instance = create_app(TestingConfig, **overrides)
        built.append(instance)
        return instance

    yield build
    for instance in built:
        with instance.app_context():
            db.session.remove()
            db.engine.dispose()
        if "local_cache" in instance.extensions:
            instance.extensions["local_cache"].close()
        instance.extensions["events"].stop()
    limiter.limit_manager.set_default_limits([])
    limiter.init_app(app)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_JSON"])


@pytest.fixture
def make_instance(committed, build_app):
    """``build_app`` for tests that commit for real: ``committed`` is set up first, so the extra
    engines are disposed before it truncates the tables."""
    return build_app


@pytest.fixture(autouse=True)
def _close_cache_breaker() -> None:
    # The catalog cache's circuit breaker is process-wide state: an app built on a dead Redis
    # opens it for a moment for every app in the process. Every test starts with it closed.
    from ecommerce.core.cache import store as catalog_cache

    catalog_cache._breaker_open_until = 0.0


@pytest.fixture
def empty_database(app: Flask, committed: None) -> None:
    """Start from empty tables, for tests whose counts are absolute (``committed`` empties them
    again afterwards)."""
    with app.app_context():
        truncate_every_table()
