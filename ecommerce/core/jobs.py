"""Background jobs, enqueued only once the transaction that asked for them has committed.

A service calls ``enqueue_after_commit(session, "process_payment", payment_id)``; the job is
handed to its queue after the commit (after_commit.py) and dropped on rollback, so no job ever
runs for a change that was rolled back. The jobs themselves (ecommerce/tasks.py) add their
enqueue function to this registry when they are defined, so nothing here imports them.

If the enqueue fails (the queue is down), the work is not lost: every job's work is also
recorded in the database (a pending payment, an owed email), and the sweeper in
``ecommerce/tasks.py`` hands it to a worker again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_PENDING_KEY = "ecommerce_jobs_after_commit"
_registry: dict[str, Callable[..., Any]] = {}


def register_job(name: str, enqueue: Callable[..., Any]) -> None:
    """Make ``name`` enqueueable: ``enqueue(*args)`` puts one run of it on the queue."""
    _registry[name] = enqueue


def enqueue_after_commit(session: Session, name: str, *args: Any) -> None:
    """Queue one run of job ``name`` with ``args`` (ids, never ORM objects) for after the commit."""
    session.info.setdefault(_PENDING_KEY, []).append((name, args))


def enqueue_committed(session: Session) -> None:
    """After the commit: every job the transaction asked for. One that cannot be enqueued is
    logged and left to the sweeper; the others still go."""
    for name, args in session.info.pop(_PENDING_KEY, None) or ():
        try:
            _registry[name](*args)
        except (RedisConnectionError, RedisTimeoutError) as error:
            # The queue's Redis is down: expected then, one line each (after_commit.py says why).
            log.warning("could not enqueue %s%r; the sweeper will pick it up: %s", name, args, error)
        except Exception:
            log.exception("could not enqueue %s%r; the sweeper will pick it up", name, args)


def forget_jobs(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
