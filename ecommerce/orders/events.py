"""The order's live stream: its current state first, then one event per change.

Each event is an ``order_events`` row: its id is the stream's event id (monotonic per order:
the rows of one order are written under the order's row lock), and it carries the order's
status and its payment's status once the change was made. ``Last-Event-ID`` replays the rows
after that id before going live. The stream reads only when woken by a notice (and on each
heartbeat, in case a notice was lost), in a short app context of its own.
"""

from __future__ import annotations

from flask import Response
from sqlalchemy import func, select

from ecommerce.core.events import Event, Topic, event_stream, register_topic, stream_response
from ecommerce.core.schemas import utc_iso
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderEvent
from ecommerce.orders.services import latest_payment_status, visible_order
from ecommerce.users.models import User

KIND = "order"
STREAM_DESCRIPTION = (
    "`text/event-stream`: first the order's current state, then one event per change. Each is "
    '`id: <event id>`, `event: order`, `data: {"order_id", "order_status", "payment_status", "at"}`; '
    "`: keep-alive` comments while idle. Send `Last-Event-ID` to replay what came after that id."
)
STREAM_RESPONSE = stream_response(STREAM_DESCRIPTION)
_REPLAY_LIMIT = 1000  # the most rows one read sends (an order has a handful)


def _event(row: OrderEvent) -> Event:
    return Event(
        "order",
        {
            "order_id": row.order_id,
            "order_status": row.to_status.value,
            "payment_status": row.payment_status.value if row.payment_status else None,
            "at": utc_iso(row.created_at),
        },
        id=row.id,
    )


def events_after(order_id: int, last_id: int) -> list[Event]:
    rows = db.session.scalars(
        select(OrderEvent)
        .where(OrderEvent.order_id == order_id, OrderEvent.id > last_id)
        .order_by(OrderEvent.id)
        .limit(_REPLAY_LIMIT)
    )
    return [_event(row) for row in rows]


def _current_state(order_id: int) -> Event:
    """The order as it is now, under the id of its latest event (0 if it has none).

    The id is read first, the state after it (each statement sees what has committed by its
    start): the state is never older than the id, so no change after the id can be hidden
    behind it. A change committed in between shows up again as the next event, its state
    the same as the first's."""
    latest = db.session.scalar(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id.desc()).limit(1)
    )
    status, updated_at = db.session.execute(
        select(Order.order_status, Order.updated_at).where(Order.id == order_id)
    ).one()
    payment_status = latest_payment_status(order_id)
    return Event(
        "order",
        {
            "order_id": order_id,
            "order_status": status.value,
            "payment_status": payment_status.value if payment_status else None,
            "at": utc_iso(latest.created_at if latest else updated_at),
        },
        id=latest.id if latest else 0,
    )


def order_stream(
    actor: User, order_id: int, last_event_id: int | None, *, until: float | None = None
) -> Response:
    """Open the order's stream: 404 for a missing or another user's order (before it starts).

    ``until``: when the access token that opened it expires (epoch seconds); the stream ends
    then, and the client reconnects with a token that is still good (a revoked login cannot).
    """
    visible_order(actor, order_id)
    # The check's transaction ends here: subscribing may wait for Redis, and the stream's first
    # read below starts afresh (from a state no older than the subscription).
    db.session.close()

    def first() -> list[Event]:
        if last_event_id is None:
            return [_current_state(order_id)]
        return events_after(order_id, last_event_id)

    def read_new(last: Event | None) -> list[Event]:
        return events_after(order_id, last.id if last is not None else last_event_id or 0)

    return event_stream(KIND, order_id, first, read_new=read_new, until=until)


def _changed_orders(cursor: int | None) -> tuple[set[int], int]:
    """Orders with events after ``cursor`` (for the embedded default's poll), and the new cursor."""
    if cursor is None:
        return set(), db.session.scalar(select(func.coalesce(func.max(OrderEvent.id), 0)))
    rows = db.session.execute(
        select(OrderEvent.order_id, func.max(OrderEvent.id))
        .where(OrderEvent.id > cursor)
        .group_by(OrderEvent.order_id)
    ).all()
    return {order_id for order_id, _ in rows}, max((last for _, last in rows), default=cursor)


register_topic(Topic(KIND, poll_changes=_changed_orders))
