"""The database engines: their options, and what runs on each of their connections.

``init_database(app)`` is the one entry point (the factory calls it): it sets the engine options,
adds the replica bind when one is configured, binds Flask-SQLAlchemy, and installs the
connection hooks below on every engine of the app. Per engine, in this order:

- ``connect``: SQLite's pragmas (foreign keys, WAL, busy timeout); the connection's birth time.
- ``checkout`` (one listener, its steps in order):
  1. the idle ping (failover.py): a connection idle for DB_PING_IDLE_SECONDS is checked with
     ``SELECT 1`` (in autocommit, its flag restored), so a dead one is never handed out;
  2. reads in autocommit (replicas.py): a GET or HEAD request's connection runs in autocommit;
  3. the pool gauge: one more connection checked out.
- ``checkin``: the pool gauge back down, the connection back to transactions, its return time.
- ``handle_error`` and ``commit`` (failover.py): failover errors count as disconnects, and a
  request that has sent a COMMIT is never run again.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from flask import Flask
from prometheus_client import Gauge
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ecommerce.config import INSTANCE_DIR
from ecommerce.core.db import failover, replicas
from ecommerce.core.db.session import install_session_events
from ecommerce.extensions import db

# SQLAlchemy's QueuePool defaults, for an engine whose options do not say (SQLite).
_DEFAULT_POOL_SIZE, _DEFAULT_MAX_OVERFLOW = 5, 10


def engine_options(app: Flask) -> dict[str, Any]:
    """The primary's engine options (the replica's copy them, under another application_name)."""
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
        "pool_pre_ping": False,  # the idle ping: only connections that sat idle
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": 5,
            "application_name": "ecommerce",
            "options": f"-c statement_timeout={app.config['DB_STATEMENT_TIMEOUT_MS']}",
        },
    }


def init_database(app: Flask) -> None:
    """Engine options, the replica bind, Flask-SQLAlchemy, and every engine's hooks."""
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app))
    replicas.configure_replica(app, options)
    db.init_app(app)
    install_session_events()
    failover.init_failover(app)
    with app.app_context():
        engines = dict(db.engines)
    postgres = engines[None].dialect.name == "postgresql"
    for bind, engine in engines.items():
        bind_options = options if bind is None else app.config["SQLALCHEMY_BINDS"][bind]
        _install_connection_hooks(engine, app.config, bind_options, postgres)
    replicas.init_replicas(app, engines)


def _install_connection_hooks(engine: Engine, config: Any, options: dict[str, Any], postgres: bool) -> None:
    ping = failover.IdlePing(config["DB_PING_IDLE_SECONDS"]) if postgres else None
    autocommit = postgres and config["READS_IN_AUTOCOMMIT"]
    gauge = _PoolGauge.of(
        engine,
        options.get("pool_size", _DEFAULT_POOL_SIZE),
        options.get("max_overflow", _DEFAULT_MAX_OVERFLOW),
    )
    if gauge is None:  # this engine's hooks are installed already
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record) -> None:
        if not postgres:
            _sqlite_pragmas(dbapi_connection)
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        if ping is not None:
            ping.check(dbapi_connection, record)
        if autocommit:
            replicas.autocommit_for_reads(dbapi_connection, record)
        gauge.checked_out(record)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, record) -> None:
        gauge.checked_in(record)
        if postgres:  # a read's autocommit, or a statement's run ``alone`` (autocommit.py)
            replicas.transactions_again(dbapi_connection, record)
        record.info["checked_in_at"] = time.monotonic()

    if postgres:
        failover.install_engine_hooks(engine)


def _sqlite_pragmas(dbapi_connection) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys (and their ON DELETE rules) are off in SQLite unless asked for.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# -- the pool gauges ----------------------------------------------------------------------------
# Each gunicorn worker has a pool of its own. The gauges are written by the process that owns
# the pool; "livesum" adds the live workers' values up (a dead worker's files are removed by
# gunicorn.conf.py's child_exit), so /metrics on an instance reports the instance's total.

DB_POOL_CHECKED_OUT = Gauge(
    "ecommerce_db_pool_checked_out",
    "Database connections in use (checked out of the pool), summed over the live workers",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "ecommerce_db_pool_size",
    "Connections the pool keeps (DB_POOL_SIZE), summed over the live workers",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "ecommerce_db_pool_capacity",
    "Most connections the pool hands out (DB_POOL_SIZE + DB_MAX_OVERFLOW), summed over the live workers",
    multiprocess_mode="livesum",
)
_CHECKED_OUT_MARK = "ecommerce_metrics_checked_out"


class _PoolGauge:
    """The pool gauges of one engine. Several apps (each with an engine) may live in one process,
    as in the tests: the size gauges add their pools up."""

    _limits: weakref.WeakKeyDictionary[Engine, tuple[int, int]] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    @classmethod
    def of(cls, engine: Engine, size: int, overflow: int) -> _PoolGauge | None:
        """The gauge of a new engine; None when ``engine`` is counted already."""
        with cls._lock:
            if engine in cls._limits:
                return None
            cls._limits[engine] = (size, size + max(overflow, 0))
            limits = list(cls._limits.values())
        DB_POOL_SIZE.set(sum(size for size, _ in limits))
        DB_POOL_CAPACITY.set(sum(capacity for _, capacity in limits))
        return cls()

    @staticmethod
    def checked_out(record) -> None:
        # record_info survives a reconnect of the record, so every counted checkout is uncounted once.
        if not record.record_info.get(_CHECKED_OUT_MARK):
            record.record_info[_CHECKED_OUT_MARK] = True
            DB_POOL_CHECKED_OUT.inc()

    @staticmethod
    def checked_in(record) -> None:
        if record.record_info.pop(_CHECKED_OUT_MARK, False):
            DB_POOL_CHECKED_OUT.dec()
