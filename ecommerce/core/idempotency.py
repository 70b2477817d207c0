"""``Idempotency-Key`` for POST endpoints that create something (orders, payments).

The first response to a (user, endpoint, key) is stored for 24 hours; a retry with the same key
and body replays it with ``Idempotent-Replayed: true``; the same key with another body is 422;
a retry while the first call is still running is 409.

How "exactly once" holds across app instances and restarts:

1. ``claim`` inserts the key row (state ``in_progress``, a fresh ``claim_token``) in its own
   short transaction; the UNIQUE constraint lets exactly one of many parallel calls win.
2. The service that does the work calls ``record_response`` with its result before it
   commits: the row becomes ``completed`` with the response (the result dumped by the view's
   own response schema), in the same transaction as the order itself, and only if the claim
   token is still ours. So an order never exists without its stored response,
   and a claim taken over by a later retry makes the earlier call roll back.
3. A call that fails with a domain error (409, 422) stores that error as its response; a call
   that fails unexpectedly releases the claim, so the client may simply retry.
4. On PostgreSQL the call holds a row lock on its key from just after the claim until its
   transaction ends. A retry that finds the key ``in_progress`` but unlocked, and older than
   ``CLAIM_GRACE`` (the moment between the claim's commit and its lock), knows its owner is
   gone (its process died, or its database connection was lost in a failover) and takes the
   claim over: nothing was committed under it, by (2). A locked key means the owner is still at
   work: 409. Where there are no row locks (SQLite), a claim is taken over after ``STALE_CLAIM``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import Response, g, request
from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, delete, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from ecommerce.core.db.session import locked
from ecommerce.core.models import UTCDateTime, dialect_insert, utcnow
from ecommerce.core.tokens import current_user
from ecommerce.errors import Conflict, DomainError, ValidationFailed, handle_domain_error
from ecommerce.extensions import db

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
RETENTION = timedelta(hours=24)
STALE_CLAIM = timedelta(minutes=5)
CLAIM_GRACE = timedelta(seconds=2)
LOCK_NOT_AVAILABLE = "55P03"
log = logging.getLogger(__name__)
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


class IdempotencyKey(db.Model):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    scope: Mapped[str] = mapped_column(String(100), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="in_progress")
    claim_token: Mapped[str] = mapped_column(String(32), nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_content_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        Index("uq_idempotency_keys_user_id_scope_key", "user_id", "scope", "key", unique=True),
        # the purge of expired keys
        Index("ix_idempotency_keys_created_at", "created_at"),
    )


@dataclass(frozen=True)
class Claim:
    id: int
    token: str


@dataclass(frozen=True)
class ResponseShape:
    """A view's success status and the dump of its response schema (core/blueprint.py)."""

    status: int
    dump: Callable[[Any], Any] | None


@dataclass(frozen=True)
class Replay:
    status: int
    content_type: str
    body: bytes

    def to_response(self) -> Response:
        response = Response(self.body, status=self.status, mimetype=self.content_type)
        response.headers[REPLAY_HEADER] = "true"
        return response


def fingerprint_request() -> str:
    """The method, the path and the JSON body (canonical: key order and spacing do not matter)."""
    body = request.get_json(silent=True)
    canonical = json.dumps(
        [request.method, request.path.rstrip("/"), body], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(user_id: int, scope: str, key: str, fingerprint: str) -> Claim | Replay:
    """Claim the key for this call, or say what an earlier call with it answered."""
    session = db.session
    token = uuid.uuid4().hex
    statement = (
        dialect_insert(IdempotencyKey, session.get_bind().dialect.name)
        .values(
            user_id=user_id,
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            state="in_progress",
            claim_token=token,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["user_id", "scope", "key"])
        .returning(IdempotencyKey.id)
    )
    claimed_id = session.execute(statement).scalar()
    if claimed_id is not None:
        session.commit()
        return _hold(session, Claim(claimed_id, token))

    postgres = session.get_bind().dialect.name == "postgresql"
    try:
        existing = session.scalar(
            locked(
                select(IdempotencyKey).where(
                    IdempotencyKey.user_id == user_id,
                    IdempotencyKey.scope == scope,
                    IdempotencyKey.key == key,
                ),
                nowait=postgres,
            )
        )
    except OperationalError as error:
        if getattr(error.orig, "pgcode", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Conflict("A request with this Idempotency-Key is still being processed; retry later.") from None
    if existing is None:
        # The row went away after the INSERT saw it (a failed call released it, or the purge
        # removed it): the key is free again.
        session.rollback()
        return claim(user_id, scope, key, fingerprint)
    now = utcnow()
    expired = existing.created_at < now - RETENTION
    # Locked by us now, so its owner holds no lock: on PostgreSQL that owner is gone, unless it
    # has only just committed its claim and is about to lock it.
    stale_after = CLAIM_GRACE if postgres else STALE_CLAIM
    abandoned = existing.state == "in_progress" and existing.created_at < now - stale_after
    if expired or abandoned:
        existing.fingerprint, existing.state, existing.claim_token = fingerprint, "in_progress", token
        existing.created_at, existing.completed_at = now, None
        existing.response_status = existing.response_body = existing.response_content_type = None
        session.commit()
        return _hold(session, Claim(existing.id, token))
    session.rollback()  # the key's lock goes; the answer is read from ``existing``
    if existing.fingerprint != fingerprint:
        raise ValidationFailed(
            {HEADER: ["This key was already used with a different request."]},
            detail="The Idempotency-Key was already used with a different request body.",
        )
    if existing.state == "in_progress":
        raise Conflict("A request with this Idempotency-Key is still being processed; retry later.")
    return Replay(existing.response_status, existing.response_content_type, bytes(existing.response_body))


def _hold(session: Session, current: Claim) -> Claim:
    """Lock the claimed key in the transaction that does the work (the session's next one),
    so that a retry can tell a running owner (locked) from a dead one (unlocked)."""
    session.execute(locked(select(IdempotencyKey.id).where(IdempotencyKey.id == current.id)))
    return current


def record_response(session: Session, result: Any) -> None:
    """Store what the current call answers (``result``, dumped as its view's response), in the
    caller's transaction, before its commit. Nothing to do without an ``Idempotency-Key``.
    If the claim was taken over meanwhile, the caller's transaction must not commit: Conflict
    is raised."""
    current: Claim | None = g.get("idempotency_claim")
    if current is None:
        return
    shape: ResponseShape = g.idempotency_shape
    body = json.dumps(shape.dump(result), separators=(",", ":")).encode()
    _finish(session, current, shape.status, "application/json", body)


def _finish(session: Session, current: Claim, status: int, content_type: str, body: bytes) -> None:
    stored = session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == current.id,
            IdempotencyKey.claim_token == current.token,
            IdempotencyKey.state == "in_progress",
        )
        .values(
            state="completed",
            response_status=status,
            response_content_type=content_type,
            response_body=body,
            completed_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if stored != 1:
        raise Conflict("This Idempotency-Key was taken over by a later request.")
    g.idempotency_claim = None


def _store_error(current: Claim, response: Response) -> None:
    db.session.rollback()  # what the failed call did goes; its error answer is stored instead
    try:
        _finish(db.session, current, response.status_code, response.mimetype, response.get_data())
        db.session.commit()
    except DomainError:
        pass  # the claim was taken over: nothing to store (the request rolls back)


def _release(current: Claim) -> None:
    """Free the key after an unexpected failure. With the database gone (the failure itself,
    often) the claim stays ``in_progress`` but unlocked, and the client's retry takes it over."""
    try:
        db.session.rollback()
        db.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == current.id,
                IdempotencyKey.claim_token == current.token,
                IdempotencyKey.state == "in_progress",
            )
        )
        db.session.commit()
    except SQLAlchemyError as error:  # best effort: the request's own error is what it answers
        log.warning(
            "could not release Idempotency-Key claim %s: %s", current.id, getattr(error, "orig", error)
        )


def idempotent(scope: str, shape: ResponseShape) -> Callable:
    """Honour ``Idempotency-Key`` on this view (after auth: keys are per user); ``shape`` makes
    the stored response (``record_response``)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = request.headers.get(HEADER)
            if key is None:
                return view(*args, **kwargs)
            if not _VALID_KEY.match(key):
                raise ValidationFailed({HEADER: ["Use 1 to 255 printable ASCII characters."]})
            outcome = claim(current_user.id, scope, key, fingerprint_request())
            if isinstance(outcome, Replay):
                return outcome.to_response()
            g.idempotency_claim = outcome
            g.idempotency_shape = shape
            try:
                return view(*args, **kwargs)
            except DomainError as error:
                if g.get("idempotency_claim") is not None:
                    if error.status >= 500:
                        # "Try again" (503): a retry with the same key must run again, not be
                        # answered this 503 for as long as the key is kept.
                        _release(outcome)
                    else:
                        _store_error(outcome, handle_domain_error(error))
                raise
            except BaseException:
                if g.get("idempotency_claim") is not None:
                    _release(outcome)
                raise

        return wrapper

    return decorator


def purge_expired() -> int:
    """Delete keys older than the retention period."""
    removed = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - RETENTION)
    ).rowcount
    db.session.commit()
    return removed
