"""Riding out a database failover: which errors mean "no primary right now", and the retry of a
request whose transaction failed before anything was committed.

While Patroni replaces a primary (a few seconds for a switchover, about ``ttl`` = 20 s after a
crash) there is no node that accepts writes. Pooled connections to the old primary die with it,
new ones find no ``read-write`` host, and a connection that survived on a demoted node refuses
writes (SQLSTATE 25006). All of these are treated as a disconnect: SQLAlchemy drops the pool's
connections, the next checkout connects afresh (a connection idle for a second is pinged
first, ``IdlePing``), and the client gets 503 with ``Retry-After`` (ecommerce/errors.py),
never a 500.

Before that, the request itself is run again for up to ``DB_RETRY_SECONDS`` when that is safe:
no COMMIT of this request has reached the database, so nothing it did is stored, and running it
again is the same as running it once. A request that did send a COMMIT (an ``Idempotency-Key``
claim, or its own transaction) is never re-run here: the outcome of a COMMIT cut off by a crash
is unknown, and only the client, with its ``Idempotency-Key``, can retry it safely.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g, has_request_context
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from ecommerce.extensions import db

log = logging.getLogger(__name__)

# SQLSTATEs that mean the server is going away or is not (or no longer) the primary.
FAILOVER_SQLSTATES = frozenset(
    {
        "25006",  # read_only_sql_transaction: the node was demoted under this connection
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, or shutting down)
    }
)
_COMMIT_SENT = "_ecommerce_commit_sent"
PRIMARY_UNAVAILABLE = "_ecommerce_primary_unavailable"  # g: a read of this request found no primary

IDLE_PINGS = Counter(
    "ecommerce_db_idle_pings_total",
    "Pooled connections checked with SELECT 1 after sitting idle",
    ["outcome"],
)
FAILOVER_RETRIES = Counter(
    "ecommerce_db_failover_retries_total", "Requests run again after losing the database before any commit"
)


def _sqlstate(error: BaseException | None) -> str:
    return getattr(error, "pgcode", None) or ""


def _failover_errors_are_disconnects(context) -> None:
    """A demoted or stopping server: drop the connection (and the pool's others) like a lost one."""
    code = _sqlstate(context.original_exception)
    if code in FAILOVER_SQLSTATES or code.startswith("08"):
        context.is_disconnect = True


def _note_commit(_connection) -> None:
    if has_request_context():
        setattr(g, _COMMIT_SENT, True)


def note_commit_sent() -> None:
    """This request is about to send a write that commits without a COMMIT the engine sees (a
    statement in autocommit): from here on, losing the database must not run the request again."""
    setattr(g, _COMMIT_SENT, True)


def install_engine_hooks(engine: Engine) -> None:
    """On a PostgreSQL engine: failover errors are disconnects; a request's COMMIT is noted."""
    event.listen(engine, "handle_error", _failover_errors_are_disconnects)
    event.listen(engine, "commit", _note_commit)


def database_unavailable(error: DBAPIError) -> bool:
    """The database (or a primary) cannot be reached: a retryable 503, not a bug."""
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    code = _sqlstate(error.orig)
    # No SQLSTATE: libpq could not connect at all. 55P03 (lock not available) and 57014
    # (statement timeout) are answered by their own rules.
    return code == "" or code in FAILOVER_SQLSTATES or code.startswith("08")


def dispatch_with_retry(dispatch: Callable[[], Any]) -> Any:
    """Run the view as one unit of work: whatever it leaves uncommitted when it raises (a
    DomainError, a unique violation, a bug) is rolled back here, before the error is answered,
    so services raise without rolling back themselves and no lock outlives the failure.

    While the database is unreachable and nothing was committed, the view is run again (backing
    off from 0.1 s to 1 s) until DB_RETRY_SECONDS have passed."""
    budget = current_app.config.get("DB_RETRY_SECONDS", 0)
    deadline = time.monotonic() + budget
    delay = 0.1
    while True:
        try:
            return dispatch()
        except DBAPIError as error:
            if not database_unavailable(error) or g.get(_COMMIT_SENT) or time.monotonic() + delay > deadline:
                roll_back()
                raise
            log.warning("database unavailable, running the request again in %.1fs: %s", delay, error.orig)
            # A read that may be stale is served by a replica on the next attempt, caught up or
            # not: during a failover a slightly old catalog beats an error.
            setattr(g, PRIMARY_UNAVAILABLE, True)
        except BaseException:
            roll_back()
            raise
        discard_session()
        FAILOVER_RETRIES.inc()
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def roll_back() -> None:
    """End the request's transaction after a failure; a lost connection is dropped quietly."""
    try:
        db.session.rollback()
    except DBAPIError as error:
        log.warning("a database connection was lost while rolling back: %s", error.orig)
        discard_session()


def discard_session() -> None:
    """Close and forget the request's session, even when a server under it has died.

    Closing rolls back each connection the session holds; on a connection whose server was
    killed that rollback fails. The answer is already made (or about to be retried): the lost
    connection is dropped, never turned into a 500 at the end of the request.
    """
    try:
        db.session.remove()
    except DBAPIError as error:
        log.warning("a database connection was lost while the session closed: %s", error.orig)
        db.session.registry.clear()


def init_failover(app: Flask) -> None:
    """After db.init_app: this teardown runs before Flask-SQLAlchemy's (teardowns run in reverse
    order of registration), which then finds no session left to close."""

    @app.teardown_appcontext
    def _close_session_safely(_error: BaseException | None) -> None:
        discard_session()


class IdlePing:
    """Check a pooled connection with ``SELECT 1`` before use, but only when it has sat idle
    for ``idle_seconds`` or more (instead of SQLAlchemy's ``pool_pre_ping`` on every checkout).

    Under load a connection goes back out within milliseconds, and a round trip per request to
    prove it alive is a tenth of a cached-miss read. A connection that died while busy fails on
    its first statement instead: SQLAlchemy marks the whole pool stale, and the request is run
    again (``dispatch_with_retry``) since nothing was committed. An idle one (a restart or a
    failover overnight) is still checked before it is handed out. The engine's hooks
    (engine.py) note when each connection was made or came back (``checked_in_at``).
    """

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds

    def check(self, dbapi_connection, record) -> None:
        returned = record.info.get("checked_in_at")
        if returned is not None and time.monotonic() - returned < self.idle_seconds:
            return
        # In autocommit, as SQLAlchemy's own ping does: a bare SELECT would open a transaction
        # (psycopg2's implicit BEGIN) and hand the request a connection already inside one.
        was_autocommit = dbapi_connection.autocommit
        cursor = None
        try:
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
        except Exception as error:  # any failure: this connection is not to be used
            IDLE_PINGS.labels("dead").inc()
            raise DisconnectionError(f"pooled connection failed its ping: {error}") from error
        else:
            IDLE_PINGS.labels("alive").inc()
        finally:
            try:
                if cursor is not None:
                    cursor.close()
                dbapi_connection.autocommit = was_autocommit
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass
