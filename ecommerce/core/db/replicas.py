"""Read replicas: which reads go to a standby, and read-your-writes across app instances.

Writes always go to ``DATABASE_URL`` (the primary: ``target_session_attrs=read-write``). A read
that may be slightly stale calls ``read_from_replica(scope)`` first; from then on the request's
session sends its queries to ``DATABASE_REPLICA_URL`` (``prefer-standby``), but only when that
replica has already replayed every write the reader must see.

The consistency model is *read-your-writes by WAL position* (docs/distributed_systems.md):

* After a transaction commits a write, the primary's WAL position (``pg_current_wal_lsn()``,
  read after the commit, on the very connection that committed, so at or past its commit
  record) is stored in Redis under a *scope*: ``catalog`` for a write to the catalog tables,
  ``user:<id>`` for a request of that user. A scope's token only ever moves forward (one Lua
  script), whichever instance writes it. This is the first step after a commit
  (after_commit.py), before the cache purge.
* A reader of a scope compares the token with the replica's ``pg_last_wal_replay_lsn()`` on the
  very connection it will read from. Caught up: the replica serves the request. Behind: the
  request reads from the primary instead. So a user who has just written never reads older
  data than their write, and a catalog cache fill never stores a copy older than the write
  that purged the cache (which would otherwise stay cached until the next purge).
* No token store (Redis down), or no replica configured: every read goes to the primary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, current_app, g, has_app_context, has_request_context, request
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ecommerce.core.db.failover import PRIMARY_UNAVAILABLE
from ecommerce.core.db.session import REPLICA_BIND, ROUTE, has_written, take_written_tables
from ecommerce.core.metrics import register_scrape_time_collector
from ecommerce.core.tokens import token_user_id
from ecommerce.extensions import db

log = logging.getLogger(__name__)

CATALOG_SCOPE = "catalog"
CATALOG_TABLES = frozenset({"products", "product_images", "categories", "reviews"})
TOKEN_KEY_PREFIX = "ecommerce:lsn:"

_COMMITTING = "ecommerce_ryw_connection"  # session.info: the primary connection being committed

ROUTED_READS = Counter(
    "ecommerce_db_routed_reads_total",
    "Reads that could use a replica, by where they went and why",
    ["target", "reason"],
)

# Store a WAL position under a scope unless a later one is already there.
_ADVANCE_TOKEN = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
"""


def lsn_to_int(lsn: str) -> int:
    """``'16/B374D848'`` -> its byte position (Lua numbers hold it exactly up to 2**53)."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def int_to_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def autocommit_for_reads(dbapi_connection, record) -> None:
    """On checkout: a GET or HEAD request's connection runs in autocommit; every other use in
    transactions (``transactions_again`` on checkin; engine.py installs both).

    Under READ COMMITTED each statement takes its own snapshot anyway, so a read-only request
    gains nothing from a transaction, and one costs two round trips on top of the statements:
    psycopg2's BEGIN before the first statement and the ROLLBACK when the session closes. The
    few GETs that write (a cart or wishlist made on first use) write one row, which commits on
    its own. psycopg2's ``autocommit`` flag is set on the client, with no round trip; SQLAlchemy
    issues no BEGIN of its own, and its COMMIT/ROLLBACK are no-ops on an autocommit connection.
    (SQLAlchemy's ``isolation_level="AUTOCOMMIT"`` option is not used: its reset on check-in can
    raise from a connection that died meanwhile, outside the pool's own error handling.)
    """
    if has_request_context() and request.method in ("GET", "HEAD"):
        dbapi_connection.autocommit = True
        record.info["autocommit"] = True


def transactions_again(dbapi_connection, record) -> None:
    if record.info.pop("autocommit", False) and dbapi_connection is not None:
        try:
            dbapi_connection.autocommit = False
        except Exception as error:  # noqa: BLE001 - a connection this broken is not pooled
            log.warning("dropping a pooled connection that could not leave autocommit: %s", error)
            record.invalidate(error)


# -- configuration ---------------------------------------------------------------------------


def configure_replica(app: Flask, engine_options: dict[str, Any]) -> None:
    """Add the replica as a Flask-SQLAlchemy bind when DATABASE_REPLICA_URL is set."""
    uri = app.config.get("SQLALCHEMY_REPLICA_URI")
    if not uri:
        return
    if not app.config.get("REDIS_URL"):
        log.warning("DATABASE_REPLICA_URL is set without REDIS_URL: replica reads are off")
        return
    options = dict(engine_options)
    connect_args = dict(options.get("connect_args", {}))
    connect_args["application_name"] = "ecommerce-read"
    options["connect_args"] = connect_args
    binds = dict(app.config.get("SQLALCHEMY_BINDS") or {})
    binds[REPLICA_BIND] = {"url": uri, **options}
    app.config["SQLALCHEMY_BINDS"] = binds


def replica_engine() -> Engine | None:
    if not has_app_context():
        return None
    return current_app.extensions["sqlalchemy"].engines.get(REPLICA_BIND)


def _redis():
    return current_app.extensions.get("redis")


# -- reading ----------------------------------------------------------------------------------


def read_from_replica(*scopes: str, session: Session | None = None) -> bool:
    """Route the rest of this session's reads to the replica if it has replayed every write of
    ``scopes``; otherwise they stay on the primary. Returns True when the replica serves them.

    Decided once per session (request): a later call changes nothing. Only GET and HEAD
    requests are routed; a session that has already written stays on the primary.
    """
    session = session or db.session
    decided = session.info.get(ROUTE)
    if decided is not None:
        return decided == "replica"
    engine = replica_engine()
    if engine is None:
        return _decide(session, "primary", "no_replica")
    if has_written(session) or (has_request_context() and request.method not in ("GET", "HEAD")):
        return _decide(session, "primary", "writer")
    if g and g.get(PRIMARY_UNAVAILABLE):
        return _decide(session, "replica", "primary_unavailable")
    position = _token_position(scopes)
    if position is None:
        return _decide(session, "primary", "no_token_store")
    try:
        connection = session.connection(bind_arguments={"bind": engine})
        standby, caught_up = connection.execute(
            text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
            {"lsn": int_to_lsn(position)},
        ).one()
    except DBAPIError as error:
        log.warning("replica unavailable, reading from the primary: %s", error.orig)
        session.rollback()
        return _decide(session, "primary", "replica_unavailable")
    if not standby:
        # The read pool's connection is to a primary: prefer-standby took it when no standby
        # answered at connect time (a cluster still starting), or its standby was promoted since.
        # Its reads are fresh, so it serves this one; then it is handed back to be replaced, so
        # that a standby that answers now gets the reads again (at most once a second).
        _replace_soon(connection)
        return _decide(session, "replica", "read_pool_on_primary", counted_as="primary")
    if not caught_up:
        return _decide(session, "primary", "replica_behind")
    return _decide(session, "replica", "caught_up")


_replaced_at = 0.0


def _replace_soon(connection: Connection) -> None:
    """Soft-invalidate ``connection``: it serves the rest of this request, and the pool opens a
    new one in its place at the next checkout. Rate-limited per process, so that a replica URL
    with no standby behind it costs one new connection a second, not one per read."""
    global _replaced_at
    now = time.monotonic()
    if now - _replaced_at < 1.0:
        return
    _replaced_at = now
    connection.connection.invalidate(soft=True)


def _decide(session: Session, target: str, reason: str, counted_as: str | None = None) -> bool:
    session.info[ROUTE] = target
    ROUTED_READS.labels(counted_as or target, reason).inc()
    return target == "replica"


def _token_position(scopes: Iterable[str]) -> int | None:
    """The furthest WAL position any of ``scopes`` must see (0: none recorded); None when the
    token store cannot be asked."""
    client = _redis()
    keys = [TOKEN_KEY_PREFIX + scope for scope in scopes]
    if client is None:
        return None
    if not keys:
        return 0
    try:
        values = client.mget(keys)
    except (RedisError, OSError) as error:
        log.warning("read-your-writes tokens unavailable, reading from the primary: %s", error)
        return None
    return max((int(value) for value in values if value is not None), default=0)


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


# -- writing: the tokens ---------------------------------------------------------------------


def hold_committing_connection(session: Session) -> None:
    """Before a commit that wrote: keep the primary connection it commits on, so that the WAL
    position is read on that very connection once the commit is done (no second connection
    from a pool every request of a worker may be holding)."""
    if replica_engine() is not None and has_written(session):
        session.info[_COMMITTING] = session.connection()


def stamp_commit(session: Session) -> None:
    """After a commit: advance the tokens of the scopes it wrote (the catalog's, and the
    request's user's) to the primary's WAL position."""
    tables = take_written_tables(session)
    connection = session.info.pop(_COMMITTING, None)
    if not tables or connection is None:
        return
    scopes = set()
    if tables & CATALOG_TABLES:
        scopes.add(CATALOG_SCOPE)
    user_id = _request_user_id()
    if user_id is not None:
        scopes.add(user_scope(user_id))
    if scopes:
        position = _wal_position(connection)
        if position is not None:
            _advance(scopes, position)


def forget_commit(session: Session) -> None:
    """After a rollback: nothing was written."""
    take_written_tables(session)
    session.info.pop(_COMMITTING, None)


def _request_user_id() -> int | None:
    """The id of the request's user, from its verified token (no database access: this runs
    after a commit, where the session can emit no SQL)."""
    if not has_request_context():
        return None
    return token_user_id()


def _wal_position(connection: Connection) -> int | None:
    """The primary's WAL position, on the connection that has just committed (its transaction
    over; the statement runs in a new one, which the session's close rolls back)."""
    try:
        return lsn_to_int(connection.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar())
    except DBAPIError as error:
        log.warning("could not read the primary's WAL position: %s", error.orig)
        return None


def _advance(scopes: Iterable[str], position: int) -> None:
    client = _redis()
    ttl = current_app.config["READ_YOUR_WRITES_TTL"]
    try:
        pipe = client.pipeline(transaction=False)
        for scope in scopes:
            pipe.eval(_ADVANCE_TOKEN, 1, TOKEN_KEY_PREFIX + scope, position, ttl)
        pipe.execute()
    except (RedisError, OSError) as error:
        log.warning("could not store read-your-writes tokens: %s", error)


# -- replica lag, read at scrape time --------------------------------------------------------


class ReplicationLagCollector:
    """``ecommerce_db_replica_lag_bytes`` / ``_seconds`` per standby, from the primary's
    ``pg_stat_replication`` at scrape time."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def collect(self):
        lag_bytes = GaugeMetricFamily(
            "ecommerce_db_replica_lag_bytes",
            "WAL the standby has yet to replay",
            labels=["replica", "sync_state"],
        )
        lag_seconds = GaugeMetricFamily(
            "ecommerce_db_replica_lag_seconds",
            "How long ago the standby replayed the latest WAL it acknowledged (0 when idle)",
            labels=["replica", "sync_state"],
        )
        standbys = GaugeMetricFamily(
            "ecommerce_db_replicas_streaming", "Standbys streaming from the primary", labels=[]
        )
        rows = self._rows()
        if rows is None:
            return
        for name, sync_state, behind, seconds in rows:
            lag_bytes.add_metric([name, sync_state], float(behind or 0))
            lag_seconds.add_metric([name, sync_state], float(seconds or 0))
        standbys.add_metric([], len(rows))
        yield lag_bytes
        yield lag_seconds
        yield standbys

    def _rows(self):
        engine = self.engine
        if engine is None:
            return None
        try:
            with engine.connect() as connection:
                return connection.execute(
                    text(
                        "SELECT application_name, sync_state,"
                        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
                        " EXTRACT(EPOCH FROM replay_lag)"
                        " FROM pg_stat_replication WHERE state = 'streaming'"
                    )
                ).all()
        except DBAPIError as error:
            log.warning("replication lag unavailable: %s", error.orig)
            return None


REPLICATION_LAG = register_scrape_time_collector(ReplicationLagCollector())


def init_replicas(app: Flask, engines: dict[str | None, Engine]) -> None:
    """After db.init_app: the lag collector watches this app's primary."""
    if REPLICA_BIND in engines and engines[None].dialect.name == "postgresql":
        REPLICATION_LAG.engine = engines[None]
