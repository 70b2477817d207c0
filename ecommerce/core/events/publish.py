"""What a transaction notifies, sent once it has committed (after_commit.py's last step).

Services call ``notify_after_commit(session, "order", order_id)`` next to the change; a rollback
drops the notice, so no stream ever shows a change that did not happen. With Redis, a
transaction's notices go out in one pipelined round trip to ``EVENTS_CHANNEL`` (with the cache
purges, when both are on one Redis: after_commit.py); without, to this process's hub.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import current_app
from prometheus_client import Counter
from redis.client import Pipeline
from sqlalchemy.orm import Session

_PENDING_KEY = "ecommerce_event_notices"

NOTICES_PUBLISHED = Counter("ecommerce_event_notices_published_total", "Change notices published", ["kind"])


def notify_after_commit(session: Session, kind: str, key: int) -> None:
    """Tell the streams of ``kind`` ``key`` once the transaction commits."""
    session.info.setdefault(_PENDING_KEY, set()).add((kind, int(key)))


def publish_committed(session: Session) -> None:
    notices = session.info.pop(_PENDING_KEY, None)
    if not notices:
        return
    client = current_app.extensions.get("redis")
    if client is not None:
        pipe = client.pipeline(transaction=False)
        _publish_commands(pipe, notices)
        pipe.execute()
    else:
        hub = current_app.extensions["events"]
        for kind, key in sorted(notices):
            hub.dispatch(kind, key)
    _count(notices)


def queue_notices(session: Session, pipe: Pipeline) -> Callable[[], None] | None:
    """``publish_committed`` on Redis, its PUBLISHes added to ``pipe`` (a pipeline the caller
    sends: after_commit.py); what to count once it has been sent, or None for no notice."""
    notices = session.info.pop(_PENDING_KEY, None)
    if not notices:
        return None
    _publish_commands(pipe, notices)
    return lambda: _count(notices)


def _publish_commands(pipe: Pipeline, notices: set[tuple[str, int]]) -> None:
    channel = current_app.config["EVENTS_CHANNEL"]
    for kind, key in sorted(notices):
        pipe.publish(channel, f"{kind}:{key}")


def _count(notices: set[tuple[str, int]]) -> None:
    for kind, _ in notices:
        NOTICES_PUBLISHED.labels(kind).inc()


def forget_notices(session: Session) -> None:
    """After a rollback: nothing happened, nothing to tell."""
    session.info.pop(_PENDING_KEY, None)
