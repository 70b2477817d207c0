"""Orders after checkout: history, the status machine, cancellation.

- The status machine (``OrderStatus``'s allowed moves) is enforced in ``move_order``, and every
  move is recorded as an ``OrderEvent`` in the same transaction.
- Cancelling locks the order row (so of two racing cancels, the second sees ``cancelled`` and
  gets 409) and gives the stock back in product-id order; a paid order is refunded by a job.

Checkout itself is in checkout.py, the emails about orders in emails.py.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import joinedload, selectinload

from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db.replicas import read_from_replica, user_scope
from ecommerce.core.db.session import locked
from ecommerce.core.events import notify_after_commit
from ecommerce.core.jobs import enqueue_after_commit
from ecommerce.errors import InvalidTransition, NotFound
from ecommerce.extensions import db
from ecommerce.orders.emails import owe_order_email
from ecommerce.orders.models import Order, OrderEmailKind, OrderEvent, OrderStatus
from ecommerce.payments.models import Payment, PaymentStatus
from ecommerce.products.models import Product
from ecommerce.users.models import Role, User

ORDER_TRANSITIONS_TOTAL = Counter("ecommerce_order_transitions_total", "Order status changes", ["to_status"])


def count_transition(to_status: OrderStatus) -> None:
    ORDER_TRANSITIONS_TOTAL.labels(to_status.value).inc()


def record_transition(
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    actor: User | None,
    note: str,
    payment_status: PaymentStatus | None = None,
) -> None:
    """Record a status move (an event of the order's stream, told after the commit)."""
    _record_event(order, from_status, to_status, actor, note, payment_status)
    count_transition(to_status)


def record_payment_event(order: Order, payment_status: PaymentStatus, note: str) -> None:
    """Record a move of the order's payment (asked for, failed, refunded): the order's status
    is unchanged, its stream still shows the move."""
    _record_event(order, order.order_status, order.order_status, None, note, payment_status)


def _record_event(
    order: Order,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    actor: User | None,
    note: str,
    payment_status: PaymentStatus | None,
) -> None:
    db.session.add(
        OrderEvent(
            order_id=order.id,
            from_status=from_status,
            to_status=to_status,
            payment_status=payment_status,
            actor_id=actor.id if actor else None,
            note=note,
        )
    )
    notify_after_commit(db.session, "order", order.id)


def latest_payment_status(order_id: int) -> PaymentStatus | None:
    return db.session.scalar(
        select(Payment.status).where(Payment.order_id == order_id).order_by(Payment.id.desc()).limit(1)
    )


def _restock(quantities: dict[int, int]) -> None:
    """Add ``quantities`` (product id -> units) back to stock, rows taken in id order."""
    if not quantities:
        return
    ids = sorted(quantities)
    db.session.execute(
        locked(select(Product.id).where(Product.id.in_(ids)).order_by(Product.id), key_share=True)
    ).all()
    db.session.execute(
        update(Product)
        .where(Product.id.in_(ids))
        .values(stock_quantity=Product.stock_quantity + case(quantities, value=Product.id))
        .execution_options(synchronize_session=False)
    )
    for product_id in ids:
        invalidate_product(db.session, product_id)
        notify_after_commit(db.session, "product", product_id)


def visible_order(
    actor: User, order_id: int, *, for_update: bool = False, with_details: bool = False
) -> Order:
    statement = select(Order).where(Order.id == order_id)
    if actor.role != Role.ADMIN:
        # Another user's order is "not found", never "forbidden": its existence stays private.
        statement = statement.where(Order.user_id == actor.id)
    if for_update:
        # NO KEY UPDATE: only the status changes; rows that merely refer to the order
        # (payments, events) need not wait.
        statement = locked(statement, of=Order, key_share=True)
    if with_details:
        # Payment.order is joined eagerly by default; here the order is the one just loaded,
        # so the payments query need not join orders again.
        statement = statement.options(
            selectinload(Order.items),
            selectinload(Order.payments).lazyload(Payment.order),
            selectinload(Order.events),
        )
    order = db.session.scalar(statement)
    if order is None:
        raise NotFound("No such order.")
    return order


def get_order(actor: User, order_id: int) -> Order:
    """One order with its lines, payments and status history."""
    return visible_order(actor, order_id, with_details=True)


def list_orders(actor: User, filters: dict[str, Any], page: int, page_size: int) -> tuple[list[Order], int]:
    """Orders newest first with their lines: one query (two with a count) whatever the page size.

    The page and its lines come in one statement: the ``LIMIT`` applies to the orders in a
    subquery, and their lines are joined to it (docs/orders_bottleneck.md).
    """
    statement = select(Order)
    if actor.role != Role.ADMIN:
        statement = statement.where(Order.user_id == actor.id)
    elif "user_id" in filters:
        statement = statement.where(Order.user_id == filters["user_id"])
    if actor.role == Role.ADMIN and filters.get("user_id") != actor.id:
        # Other users' orders may lag a moment behind; the admin's own writes never do.
        read_from_replica(user_scope(actor.id))
    if "order_status" in filters:
        statement = statement.where(Order.order_status == filters["order_status"])
    if actor.role != Role.ADMIN and "order_status" not in filters:
        # A customer's whole history: the total is kept on the user row (O(1), not O(orders)),
        # and this request's login check has just read that row: no query of its own.
        total = actor.orders_count
    else:
        total = db.session.scalar(statement.with_only_columns(func.count(), maintain_column_froms=True))
    orders = db.session.scalars(
        statement.options(joinedload(Order.items))
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).unique()
    return orders.all(), total


_LOOK_UP = object()


def move_order(
    order: Order,
    to_status: OrderStatus,
    actor: User | None,
    note: str,
    payment_status: PaymentStatus | None | object = _LOOK_UP,
) -> None:
    """Move an order along the status machine and record who did it; illegal moves are 409.
    ``payment_status``: the payment's status after the move, when the caller knows it."""
    if not order.can_move_to(to_status):
        raise InvalidTransition(
            f"An order that is {order.order_status.value} cannot become {to_status.value}."
        )
    if payment_status is _LOOK_UP:
        payment_status = latest_payment_status(order.id)
    record_transition(order, order.order_status, to_status, actor, note, payment_status)
    order.order_status = to_status


def cancel_order(actor: User, order_id: int) -> Order:
    """Cancel a pending or paid order and give its stock back, exactly once."""
    order = visible_order(actor, order_id, for_update=True)
    move_order(order, OrderStatus.CANCELLED, actor, "cancelled")
    quantities: dict[int, int] = {}
    for item in order.items:
        if item.product_id is not None:
            quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    _restock(quantities)
    owe_order_email(db.session, order.id, OrderEmailKind.CANCELLATION)
    # A paid order's money goes back; the refund is a job (the gateway is slow and may fail).
    for payment_id in db.session.scalars(
        select(Payment.id).where(Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED)
    ):
        enqueue_after_commit(db.session, "refund_payment", payment_id)
    db.session.commit()
    return get_order(actor, order_id)


def change_status(actor: User, order_id: int, to_status: OrderStatus) -> Order:
    """Move an order along the status machine (admin); illegal moves are 409."""
    if to_status == OrderStatus.CANCELLED:
        return cancel_order(actor, order_id)
    order = visible_order(actor, order_id, for_update=True)
    move_order(order, to_status, actor, "status changed")
    db.session.commit()
    return get_order(actor, order_id)
