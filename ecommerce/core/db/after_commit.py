"""The one place that lists what runs once a transaction has committed, and in which order.

Services never act on the outside world inside a transaction: they queue what a commit owes on
the session (``invalidate_product``, ``enqueue_after_commit``), and a rollback drops it. Once the
commit is done, the steps run in this order:

1. **read-your-writes tokens** (replicas.py): the primary's WAL position for the scopes the
   transaction wrote. First, so that a reader who misses the purged cache next already finds
   the new catalog token and does not fill the cache from a replica that lags behind the write.
2. **job enqueue** (jobs.py): the Huey jobs the transaction asked for (a payment to charge, an
   email to send), each of whose work is also recorded in the committed rows.
3. **cache purge** (cache/purge.py): the new generation of each written product and of the
   product lists, then the cached entries deleted.
4. **event publish** (events/publish.py): the change notices for the live streams. Last: a
   stream woken by a notice reads the committed rows, and a client that reacts to the event by
   reading the API no longer finds the purged cache entry.

When the cache and the notices are on one Redis (the cache's URL is REDIS_URL, as it is unless
set apart), steps 3 and 4 are one pipelined round trip, the purge's commands before the
notices' (Redis runs a pipeline's commands in order). A checkout owes both, and each round trip
costs a worker a send and a receive on top of redis-py's own work (docs/performance_tuning.md,
"Fewer round trips per order").

A step that fails is logged and counted (``ecommerce_after_commit_failures_total``) and the
next step still runs: the write is committed, and no side effect after the commit may turn it
into an error answer (a client that got 500 for an order that exists would place a second
one). What a failed step leaves undone is recovered elsewhere: a purge by the entries' expiry
and the per-process cache's bounded lifetime, a job by the sweeper (ecommerce/tasks.py), a
token by the reader falling back to the primary when it cannot tell, a notice by the order
stream's read on every heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from flask import current_app
from prometheus_client import Counter
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import event
from sqlalchemy.orm import Session

from ecommerce.core import jobs
from ecommerce.core.cache import purge
from ecommerce.core.cache.store import note_cache_failure, redis_client
from ecommerce.core.db import replicas
from ecommerce.core.events import publish as notices

log = logging.getLogger(__name__)

AFTER_COMMIT_FAILURES = Counter(
    "ecommerce_after_commit_failures_total",
    "Side effects of a committed transaction that failed (logged; the write stands)",
    ["step"],
)


class Step(NamedTuple):
    name: str
    run: Callable[[Session], None]  # after the commit: do what the transaction queued
    forget: Callable[[Session], None]  # after a rollback: drop it
    # On the shared Redis: add the step's commands to the pipeline sent after the last step,
    # and return what to do once it has been sent (or None).
    queue: Callable[[Session, Pipeline], Callable[[], None] | None] | None = None


STEPS: tuple[Step, ...] = (
    Step("read_your_writes", replicas.stamp_commit, replicas.forget_commit),
    Step("job_enqueue", jobs.enqueue_committed, jobs.forget_jobs),
    Step("cache_purge", purge.purge_committed, purge.forget_purges, purge.queue_purges),
    Step("event_publish", notices.publish_committed, notices.forget_notices, notices.queue_notices),
)


def _before_commit(session: Session) -> None:
    # The only preparation a step needs: the connection the tokens are read on after the commit.
    replicas.hold_committing_connection(session)


def _after_commit(session: Session) -> None:
    try:
        shared = _shared_pipeline()
    except Exception as error:  # noqa: BLE001 - each step then makes its own round trip
        log.error("after-commit: no shared Redis pipeline", exc_info=error)
        shared = None
    queued: list[tuple[Step, Callable[[], None] | None]] = []
    for step in STEPS:
        try:
            if shared is not None and step.queue is not None:
                commands = len(shared)
                done = step.queue(session, shared)
                if len(shared) > commands:  # only a step that queued something can fail there
                    queued.append((step, done))
            else:
                step.run(session)
        except Exception as error:  # noqa: BLE001 - the transaction is committed: log, count, go on
            _failed(step, error)
    if not queued:
        return
    try:
        shared.execute()
    except Exception as error:  # noqa: BLE001 - as above
        note_cache_failure(error)  # the purge's part: reads skip the cache for a while
        for step, _ in queued:
            _failed(step, error)
        return
    for _, done in queued:
        if done is not None:
            done()


def _shared_pipeline() -> Pipeline | None:
    """A pipeline on the cache's Redis when the event notices go to that same Redis, else None
    (each step then makes its own round trip)."""
    client = redis_client()
    config = current_app.config
    if client is None or "redis" not in current_app.extensions:
        return None
    if config.get("CACHE_REDIS_URL") != config.get("REDIS_URL"):
        return None
    return client.pipeline(transaction=False)


def _failed(step: Step, error: Exception) -> None:
    AFTER_COMMIT_FAILURES.labels(step.name).inc()
    if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
        # Redis unreachable: expected while it is down, so one line, not a traceback. With
        # tracebacks, a 10 s outage under tests/integration/test_redis_outage.py's load
        # logged 357 per instance (this step's and the job enqueue's, core/jobs.py).
        log.warning("after-commit step %s failed; the committed write stands: %s", step.name, error)
    else:
        log.error("after-commit step %s failed; the committed write stands", step.name, exc_info=error)


def _after_rollback(session: Session) -> None:
    for step in STEPS:
        step.forget(session)


def install_after_commit() -> None:
    """Listen to every Session's commits and rollbacks (once per process)."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
