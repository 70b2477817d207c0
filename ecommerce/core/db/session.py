"""The ORM session: where its statements go, and what it notes about every statement it runs.

- ``RoutingSession`` (``db.session``) sends a request's reads to the replica once
  ``read_from_replica`` (replicas.py) has decided so; a flush, a write, always goes to the primary.
- ``locked(select(...))``: rows read ``FOR UPDATE`` are read fresh, never taken from the
  identity map.
- The tables a transaction writes are noted, so that its commit can stamp the read-your-writes
  tokens (replicas.py, run by after_commit.py).

The statement listeners are installed once per process by ``install_session_events`` (the
factory calls it through ``init_database``); they apply to every Session, the tests' own included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import flask_sqlalchemy.session
from flask import current_app
from sqlalchemy import Select, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ecommerce.errors import Conflict

REPLICA_BIND = "replica"
ROUTE = "ecommerce_read_route"  # session.info: "replica" or "primary", decided once per session
_WROTE = "ecommerce_wrote_tables"  # session.info: tables written by the current transaction


class RoutingSession(flask_sqlalchemy.session.Session):
    """``db.session``: the primary unless this session was routed to the replica. A session
    that writes (a flush, an INSERT, UPDATE or DELETE) is sent back to the primary for good,
    its reads included: it reads its own writes."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and self.info.get(ROUTE) == "replica":
            engine = current_app.extensions["sqlalchemy"].engines.get(REPLICA_BIND)
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def locked(statement: Select, **for_update: Any) -> Select:
    """``statement`` with ``FOR UPDATE`` (``with_for_update``'s options), its rows read fresh.

    A locked row is the row as it is now, never an older copy in the session. Objects outlive
    their transaction here (expire_on_commit=False), and the ORM would hand back the copy
    already in the identity map. A service that locks a row to check its state (is this payment
    still pending?) must see the committed truth.
    """
    return statement.with_for_update(**for_update).execution_options(populate_existing=True)


UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
RACED = "The change conflicts with another one made at the same moment; try again."


@contextmanager
def conflict_on_duplicate(detail: str) -> Iterator[None]:
    """A unique violation in the block (a flush or a commit: two requests made the same row at
    once) becomes a Conflict saying ``detail``; any other integrity error (a row referred to
    was deleted meanwhile) a Conflict saying so. The request's unit of work rolls it back."""
    try:
        yield
    except IntegrityError as error:
        raise Conflict(detail if _is_unique_violation(error) else RACED) from None


def _is_unique_violation(error: IntegrityError) -> bool:
    original = error.orig
    if getattr(original, "pgcode", None) == UNIQUE_VIOLATION:
        return True
    return getattr(original, "sqlite_errorname", "") in (
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    )


# -- the tables a transaction writes ------------------------------------------------------------


def note_writes(session: Session, *tables: str) -> None:
    """Record the tables a plain-SQL statement wrote (the ORM sees the tables of its own
    INSERT, UPDATE and DELETE, but not those of a ``text()`` statement with data-modifying
    CTEs), so that its commit stamps the read-your-writes tokens like any other write."""
    _note(session, tables)


def has_written(session: Session) -> bool:
    return bool(session.info.get(_WROTE))


def take_written_tables(session: Session) -> set[str]:
    """The tables the transaction that just ended wrote; forgotten from then on."""
    return session.info.pop(_WROTE, None) or set()


def _note(session: Session, tables: Iterable[str]) -> None:
    session.info.setdefault(_WROTE, set()).update(tables)


def _to_the_primary(session: Session) -> None:
    if session.info.get(ROUTE) == "replica":
        session.info[ROUTE] = "primary"


def _before_flush(session: Session, _flush_context, _instances) -> None:
    _to_the_primary(session)


def _tables_flushed(session: Session, _flush_context) -> None:
    tables = {getattr(obj, "__tablename__", "") for obj in (*session.new, *session.dirty, *session.deleted)}
    _note(session, tables or {""})


def _on_statement(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _to_the_primary(state.session)
        table = getattr(state.statement, "table", None)
        _note(state.session, {getattr(table, "name", "")})


def install_session_events() -> None:
    """Listen to every Session's statements and flushes (once per process)."""
    if not event.contains(Session, "do_orm_execute", _on_statement):
        event.listen(Session, "do_orm_execute", _on_statement)
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "after_flush", _tables_flushed)
