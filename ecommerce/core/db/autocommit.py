"""Statements that are a whole transaction by themselves, run without one around them.

psycopg2 opens a transaction with a BEGIN of its own before a connection's first statement, and
the session ends it with a COMMIT: two round trips around every request that writes, on top of
its statements. A statement that is atomic by itself (the login check, the add-to-cart's
upsert, the checkout's ``place_orders()``) needs neither when it is the request's first: run in
autocommit, it is its own transaction. Under READ COMMITTED every statement takes its own
snapshot anyway, so only the number of round trips changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ecommerce.core.db.failover import note_commit_sent


@contextmanager
def alone(session: Session, *, writes: bool, keep: bool = False) -> Iterator[Connection]:
    """The session's connection, for one statement that is a whole transaction by itself: on
    PostgreSQL, when the request holds no transaction open on the server, the statement runs
    in autocommit. That spares two round trips of three: psycopg2's BEGIN before it and the
    COMMIT after it (``session.commit()`` sends none on a connection in autocommit). A
    transaction already open (an earlier statement of the request, or a test's outer
    transaction) takes the statement in, as before; so does SQLite.

    ``writes``: the statement commits a write by itself, so from here on a lost connection
    leaves its outcome unknown and the request is not run again (failover.py), even when the
    statement turns out to write nothing (an add-to-cart before the cart exists): a failover
    at that moment answers 503 with Retry-After instead of running the request again. A read
    (``writes=False``) runs alone only while READS_IN_AUTOCOMMIT is on. A session holding
    changes not yet flushed never runs a statement alone: they would be committed with it. ``keep``: the
    statement ends the request's work, and the connection stays in autocommit until the pool
    takes it back (engine.py's check-in hook), so that a read after the commit (the WAL
    position of replicas.py) needs no transaction either; otherwise the next statement opens a
    transaction as usual."""
    connection = session.connection()
    pooled = connection.connection
    dbapi = pooled.dbapi_connection
    if (
        connection.dialect.name != "postgresql"
        # Changes the ORM would flush before the statement would be committed with it.
        or session.new
        or session.dirty
        or session.deleted
        # READS_IN_AUTOCOMMIT off: no read runs in autocommit, this one neither.
        or (not writes and not current_app.config["READS_IN_AUTOCOMMIT"])
    ):
        yield connection
        return
    if dbapi.autocommit or dbapi.info.transaction_status != TRANSACTION_STATUS_IDLE:
        if writes and dbapi.autocommit:  # a GET's connection (replicas.py): the same outcome
            note_commit_sent()
        yield connection
        return
    if writes:
        note_commit_sent()
    # psycopg2's flag is set on the client, with no round trip; the check-in hook clears a
    # flag left set, and so does the ``finally`` below unless ``keep``.
    dbapi.autocommit = True
    pooled.info["autocommit"] = True
    try:
        yield connection
    finally:
        if not keep and not dbapi.closed:
            dbapi.autocommit = False
            pooled.info.pop("autocommit", None)
