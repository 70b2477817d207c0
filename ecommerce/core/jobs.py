"""Enqueue background jobs only once the transaction that asked for them has committed.

A service calls ``enqueue_after_commit(session, "process_payment", payment_id)``; the job is
handed to Huey in the session's ``after_commit`` event and dropped on rollback, so no job ever
runs for a change that was rolled back. If the enqueue itself fails (the queue is down), the
work is not lost: every job's work is also recorded in the database (a pending payment, an
owed email), and the sweeper in ``ecommerce/tasks.py`` hands it to a worker again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_PENDING_KEY = "ecommerce_jobs_after_commit"


def enqueue_after_commit(session: Session, task_name: str, *args: Any) -> None:
    session.info.setdefault(_PENDING_KEY, []).append((task_name, args))


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    from ecommerce import tasks  # the tasks import the services that import this module

    for task_name, args in pending:
        try:
            getattr(tasks, task_name)(*args)
        except Exception:  # the sweeper recovers it; the request must not fail after its commit
            log.exception("could not enqueue %s%r; the sweeper will pick it up", task_name, args)


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
