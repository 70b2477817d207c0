"""Read replicas: which reads go to a standby, and read-your-writes across app instances.

Writes always go to ``DATABASE_URL`` (the primary: ``target_session_attrs=read-write``). A read
that may be slightly stale calls ``read_from_replica(scope)`` first; from then on the request's
session sends its queries to ``DATABASE_REPLICA_URL`` (``prefer-standby``), but only when that
replica has already replayed every write the reader must see.

The consistency model is *read-your-writes by WAL position* (docs/distributed_systems.md):

* After a transaction commits a write, the primary's WAL position (``pg_current_wal_lsn()``,
  read after the commit, so at or past its commit record) is stored in Redis under a *scope*:
  ``catalog`` for a write to the catalog tables, ``user:<id>`` for a request of that user.
  A scope's token only ever moves forward (one Lua script), whichever instance writes it.
* A reader of a scope compares the token with the replica's ``pg_last_wal_replay_lsn()`` on the
  very connection it will read from. Caught up: the replica serves the request. Behind: the
  request reads from the primary instead. So a user who has just written never reads older
  data than their write, and a catalog cache fill never stores a copy older than the write
  that purged the cache (which would otherwise stay cached until the next purge).
* No token store (Redis down), or no replica configured: every read goes to the primary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import flask_sqlalchemy.session
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ecommerce.core.failover import PRIMARY_UNAVAILABLE
from ecommerce.core.metrics import register_scrape_time_collector

log = logging.getLogger(__name__)

REPLICA_BIND = "replica"
CATALOG_SCOPE = "catalog"
CATALOG_TABLES = frozenset({"products", "categories", "reviews"})
TOKEN_KEY_PREFIX = "ecommerce:lsn:"

_ROUTE = "ecommerce_read_route"  # session.info: "replica" or "primary", decided once per session
_WROTE = "ecommerce_wrote_tables"  # session.info: tables written by the current transaction
_USER_SCOPES = "_ecommerce_ryw_user_scopes"  # g: user scopes to stamp once the request ends

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


class RoutingSession(flask_sqlalchemy.session.Session):
    """``db.session``: the primary unless this session was routed to the replica; a flush (a
    write) always goes to the primary."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and not self._flushing and self.info.get(_ROUTE) == "replica":
            engine = self._db.engines.get(REPLICA_BIND)
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def reads_in_autocommit(engine: Engine) -> None:
    """A GET or HEAD request's connection runs in autocommit; every other use in transactions.

    Under READ COMMITTED each statement takes its own snapshot anyway, so a read-only request
    gains nothing from a transaction, and one costs two round trips on top of the statements:
    psycopg2's BEGIN before the first statement and the ROLLBACK when the session closes. The
    few GETs that write (a cart or wishlist made on first use) write one row, which commits on
    its own. psycopg2's ``autocommit`` flag is set on the client, with no round trip; SQLAlchemy
    issues no BEGIN of its own, and its COMMIT/ROLLBACK are no-ops on an autocommit connection.
    (SQLAlchemy's ``isolation_level="AUTOCOMMIT"`` option is not used: its reset on check-in can
    raise from a connection that died meanwhile, outside the pool's own error handling.)
    """

    @event.listens_for(engine, "checkout")
    def _autocommit_for_reads(dbapi_connection, record, _proxy) -> None:
        if has_request_context() and request.method in ("GET", "HEAD"):
            dbapi_connection.autocommit = True
            record.info["autocommit"] = True

    @event.listens_for(engine, "checkin")
    def _transactions_again(dbapi_connection, record) -> None:
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
    from ecommerce.extensions import db

    session = session or db.session
    decided = session.info.get(_ROUTE)
    if decided is not None:
        return decided == "replica"
    engine = replica_engine()
    if engine is None:
        return _decide(session, "primary", "no_replica")
    if session.info.get(_WROTE) or (has_request_context() and request.method not in ("GET", "HEAD")):
        return _decide(session, "primary", "writer")
    if g and g.get(PRIMARY_UNAVAILABLE):
        return _decide(session, "replica", "primary_unavailable")
    position = _token_position(scopes)
    if position is None:
        return _decide(session, "primary", "no_token_store")
    try:
        connection = session.connection(bind_arguments={"bind": engine})
        caught_up = connection.execute(
            text("SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
            {"lsn": int_to_lsn(position)},
        ).scalar()
    except DBAPIError as error:
        log.warning("replica unavailable, reading from the primary: %s", error.orig)
        session.rollback()
        return _decide(session, "primary", "replica_unavailable")
    if not caught_up:
        return _decide(session, "primary", "replica_behind")
    return _decide(session, "replica", "caught_up")


def _decide(session: Session, target: str, reason: str) -> bool:
    session.info[_ROUTE] = target
    ROUTED_READS.labels(target, reason).inc()
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


def _note_tables(session: Session, tables: Iterable[str]) -> None:
    session.info.setdefault(_WROTE, set()).update(tables)


def note_writes(session: Session, *tables: str) -> None:
    """Record the tables a plain-SQL statement wrote (the ORM sees the tables of its own
    INSERT, UPDATE and DELETE, but not those of a ``text()`` statement with data-modifying
    CTEs), so that its commit stamps the read-your-writes tokens like any other write."""
    _note_tables(session, tables)


@event.listens_for(Session, "after_flush")
def _tables_flushed(session: Session, _flush_context) -> None:
    tables = {getattr(obj, "__tablename__", "") for obj in (*session.new, *session.dirty, *session.deleted)}
    _note_tables(session, tables or {""})


@event.listens_for(Session, "do_orm_execute")
def _tables_executed(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        _note_tables(state.session, {getattr(table, "name", "")})


def _primary_wal_position() -> int | None:
    engine = current_app.extensions["sqlalchemy"].engines[None]
    if engine.dialect.name == "postgresql":
        try:
            with engine.connect() as connection:
                return lsn_to_int(connection.execute(text("SELECT pg_current_wal_lsn()::text")).scalar())
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


def _stamp(scopes: set[str]) -> None:
    position = _primary_wal_position()
    if position is not None:
        _advance(scopes, position)


# insert=True: runs before the cache's own after_commit purge (ecommerce/core/cache.py), so a
# reader that misses the purged cache already finds the new catalog token.
@event.listens_for(Session, "after_commit", insert=True)
def _after_commit(session: Session) -> None:
    tables = session.info.pop(_WROTE, None)
    if not tables or replica_engine() is None:
        return
    try:
        if tables & CATALOG_TABLES:
            _stamp({CATALOG_SCOPE})
        if has_request_context():
            user_id = _request_user_id()
            if user_id is not None:
                g.setdefault(_USER_SCOPES, set()).add(user_scope(user_id))
    except Exception:  # the transaction is committed: the caller must not see it fail
        log.exception("could not record the read-your-writes tokens of a commit")


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_WROTE, None)


def _request_user_id() -> int | None:
    """The id of the request's user, without touching the database: this runs in
    ``after_commit``, where the session can emit no SQL. After a rollback in the request (an
    Idempotency-Key that stores a 409, or releases its claim) the user object is expired, and
    reading ``user.id`` would load it: an InvalidRequestError, and a 500 for a committed write.
    Its identity key (the primary key) survives expiry."""
    loaded = g.get("_jwt_extended_jwt_user")
    user = loaded.get("loaded_user") if isinstance(loaded, dict) else None
    state = inspect(user, raiseerr=False) if user is not None else None
    identity = state.identity if state is not None else None
    return identity[0] if identity else None


def stamp_request_writes() -> None:
    """Before a response leaves: the user's token, once per request that wrote."""
    scopes = g.pop(_USER_SCOPES, None)
    if scopes and replica_engine() is not None:
        _stamp(scopes)


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


def init_replicas(app: Flask) -> None:
    """After db.init_app: the lag collector watches this app's primary."""
    app.after_request(_stamp_after_request)
    with app.app_context():
        engines = app.extensions["sqlalchemy"].engines
        if REPLICA_BIND in engines and engines[None].dialect.name == "postgresql":
            REPLICATION_LAG.engine = engines[None]


def _stamp_after_request(response):
    stamp_request_writes()
    return response
