"""Checkout, order history and the order status machine.

Concurrency design (docs/db_optimization.md, "Checkout"):

- Checkout locks the user's cart row, then the cart's product rows with one
  ``SELECT ... ORDER BY id FOR NO KEY UPDATE`` (it changes stock, never a key, so foreign-key
  checks such as adding the product to a cart need not wait for it). Every transaction that
  locks several products takes them in primary-key order, so two checkouts never wait on
  each other in a cycle (no deadlock), whatever order the carts list the products in.
- With the rows locked, availability is checked for every line, and either every line's stock
  is decremented (one UPDATE) or, if any line is short, nothing is: the 409 names each short
  product. ``CHECK (stock_quantity >= 0)`` backs this up in the database itself.
- The order, its lines (with the unit price paid), the emptied cart, the order's first event
  and the stored Idempotency-Key response commit together, or not at all.
- On PostgreSQL that is two statements: the cart lock, the removal of its lines and the
  product locks in one (data-modifying CTEs), then the stock decrement, the order, its lines,
  its event and the buyer's order count in another. The decrement may not join the locking
  statement: see ``_WRITE_ORDER``. Elsewhere (SQLite) the same steps run one by one.
- Cancelling locks the order row (so of two racing cancels, the second sees ``cancelled`` and
  gets 409) and gives the stock back in product-id order.
"""

from __future__ import annotations

import html
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage
from typing import Any, NoReturn

from flask import current_app
from prometheus_client import Counter
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.orm import Session, joinedload, selectinload

from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.carts.services import cart_id_of
from ecommerce.core.cache import invalidate_product
from ecommerce.core.idempotency import complete_in_transaction
from ecommerce.core.jobs import enqueue_after_commit
from ecommerce.core.mail import send_message
from ecommerce.core.models import dialect_insert, utcnow
from ecommerce.core.replicas import note_writes, read_from_replica, user_scope
from ecommerce.errors import Conflict, InsufficientStock, InvalidTransition, NotFound
from ecommerce.extensions import db
from ecommerce.orders.models import (
    Order,
    OrderEmail,
    OrderEmailKind,
    OrderEmailStatus,
    OrderEvent,
    OrderItem,
    OrderStatus,
)
from ecommerce.orders.schemas import OrderSchema
from ecommerce.payments.models import Payment, PaymentStatus
from ecommerce.products.models import Product
from ecommerce.users.models import Role, User

ORDERS_PLACED = Counter("ecommerce_orders_placed_total", "Orders placed by checkout")
STOCK_CONFLICTS = Counter("ecommerce_stock_conflicts_total", "Checkouts refused because a product was short")
ORDER_TRANSITIONS_TOTAL = Counter("ecommerce_order_transitions_total", "Order status changes", ["to_status"])

CENT = Decimal("0.01")
_order_schema = OrderSchema()


def _restock(quantities: dict[int, int]) -> None:
    """Add ``quantities`` (product id -> units) back to stock, rows taken in id order."""
    if not quantities:
        return
    ids = sorted(quantities)
    db.session.execute(
        select(Product.id).where(Product.id.in_(ids)).order_by(Product.id).with_for_update(key_share=True)
    ).all()
    db.session.execute(
        update(Product)
        .where(Product.id.in_(ids))
        .values(stock_quantity=Product.stock_quantity + case(quantities, value=Product.id))
        .execution_options(synchronize_session=False)
    )
    for product_id in ids:
        invalidate_product(db.session, product_id)


def _record(
    order: Order, from_status: OrderStatus | None, to_status: OrderStatus, actor: User | None, note: str
) -> None:
    db.session.add(
        OrderEvent(
            order_id=order.id,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor.id if actor else None,
            note=note,
        )
    )
    ORDER_TRANSITIONS_TOTAL.labels(to_status.value).inc()


# Checkout on PostgreSQL: two statements (docs/db_optimization.md, "Checkout").
#
# The first takes every lock and reads what the order needs. All its CTEs read one snapshot:
# - lines: the cart row is locked first (an InitPlan, evaluated before any line is read), so a
#   second checkout of this cart waits there; once it has the lock, the lines the first one
#   deleted are skipped (already deleted), and it finds the cart empty.
# - the products of those lines, locked in id order (LockRows sits above the sort). A row that
#   another transaction changed meanwhile is re-read once its lock is free, so the stock
#   returned is the stock as it is now, and it cannot change until this transaction ends.
# One row per cart line; no row: the cart is empty (or there is no cart yet).
_TAKE_CART = text(
    """
WITH lines AS (
    DELETE FROM cart_items
    WHERE cart_id = (SELECT id FROM shopping_carts WHERE user_id = :user_id FOR NO KEY UPDATE)
    RETURNING product_id, quantity
),
locked AS MATERIALIZED (
    SELECT id, name, price, stock_quantity
    FROM products
    WHERE id = ANY (ARRAY(SELECT product_id FROM lines))
    ORDER BY id
    FOR NO KEY UPDATE
)
SELECT lines.product_id, lines.quantity, locked.name, locked.price, locked.stock_quantity
FROM lines LEFT JOIN locked ON locked.id = lines.product_id
ORDER BY lines.product_id
"""
)
# The second writes the order, once every line is known to be in stock. It must be a statement
# of its own: its snapshot is taken after the locks above, so it updates the product rows
# this transaction holds as they are. Within the statement that locked them, the UPDATE would
# reach them through the older versions its snapshot sees, and queue on those versions' tuple
# locks behind the very checkouts that wait for ours: a deadlock (seen under load).
_WRITE_ORDER = text(
    """
WITH wanted AS (
    SELECT * FROM unnest(CAST(:product_ids AS integer[]), CAST(:quantities AS integer[]))
        AS wanted (product_id, quantity)
),
taken AS (
    UPDATE products
    SET stock_quantity = products.stock_quantity - wanted.quantity
    FROM wanted
    WHERE products.id = wanted.product_id
    RETURNING products.id, products.name, products.price, wanted.quantity
),
placed AS (
    INSERT INTO orders (user_id, order_status, total_amount, shipping_address, created_at, updated_at)
    SELECT :user_id, :pending, sum(price * quantity), :address, :now, :now
    FROM taken
    RETURNING id
),
items AS (
    INSERT INTO order_items (order_id, product_id, product_name, quantity, price)
    SELECT placed.id, taken.id, taken.name, taken.quantity, taken.price
    FROM placed CROSS JOIN taken
    ORDER BY taken.id
),
event AS (
    INSERT INTO order_events (order_id, from_status, to_status, actor_id, note, created_at)
    SELECT id, NULL, :pending, :user_id, :note, :now FROM placed
),
counted AS (
    UPDATE users SET orders_count = orders_count + 1, updated_at = :now WHERE id = :user_id
)
SELECT placed.id, (SELECT count(*) FROM taken) AS lines FROM placed
"""
)
_ORDER_WRITES = ("cart_items", "products", "orders", "order_items", "order_events", "users")


def place_order(user: User, data: dict[str, Any]) -> Order:
    """Turn the user's whole cart into a pending order, in one transaction.

    On PostgreSQL the checkout is two statements: one takes the cart and locks its products,
    the other writes the order. The product locks, the only ones buyers contend for, are held
    for the fewest round trips: the second statement, the stored Idempotency-Key response (if
    any) and the commit.
    """
    session = db.session
    address = data.get("shipping_address", "")
    if session.get_bind().dialect.name == "postgresql":
        order = _check_out_in_two_statements(session, user, address)
    else:
        order = _check_out_step_by_step(session, user, address)
    for item in order.items:
        invalidate_product(session, item.product_id)
    complete_in_transaction(session, 201, lambda: _order_schema.dump(order))
    session.commit()
    ORDERS_PLACED.inc()
    return order


def _refuse_empty_cart(session: Session) -> NoReturn:
    session.rollback()
    raise Conflict("Your cart is empty.")


def _refuse_short_lines(session: Session, wanted: dict[int, int], stock: dict[int, int]) -> None:
    """409 naming every short product, with nothing changed (``stock`` lacks missing products)."""
    short = [
        {"product_id": product_id, "requested": quantity, "available": stock.get(product_id, 0)}
        for product_id, quantity in wanted.items()
        if product_id not in stock or stock[product_id] < quantity
    ]
    if short:
        session.rollback()  # the cart lines come back with the rollback
        STOCK_CONFLICTS.inc()
        names = ", ".join(str(item["product_id"]) for item in short)
        raise InsufficientStock(f"Not enough stock for product(s) {names}.", products=short)


def _check_out_in_two_statements(session: Session, user: User, address: str) -> Order:
    rows = session.execute(_TAKE_CART, {"user_id": user.id}).all()
    if not rows:
        _refuse_empty_cart(session)
    wanted = {row.product_id: row.quantity for row in rows}
    _refuse_short_lines(
        session,
        wanted,
        {row.product_id: row.stock_quantity for row in rows if row.stock_quantity is not None},
    )
    now = utcnow()
    order_id, taken = session.execute(
        _WRITE_ORDER,
        {
            "product_ids": list(wanted),
            "quantities": list(wanted.values()),
            "user_id": user.id,
            "pending": OrderStatus.PENDING.value,
            "address": address,
            "now": now,
            "note": "placed",
        },
    ).one()
    note_writes(session, *_ORDER_WRITES)
    if taken != len(wanted):  # every product row is locked by us: cannot happen
        session.rollback()
        raise RuntimeError(f"checkout updated {taken} of {len(wanted)} products; rolled back")
    ORDER_TRANSITIONS_TOTAL.labels(OrderStatus.PENDING.value).inc()  # the event written above
    # The order as written, for the response (the rows are locked: these are the values stored).
    items = [
        OrderItem(
            order_id=order_id,
            product_id=row.product_id,
            product_name=row.name,
            quantity=row.quantity,
            price=row.price,
        )
        for row in rows
    ]
    return Order(
        id=order_id,
        user_id=user.id,
        order_status=OrderStatus.PENDING,
        total_amount=_total(items),
        shipping_address=address,
        created_at=now,
        updated_at=now,
        items=items,
    )


def _check_out_step_by_step(session: Session, user: User, address: str) -> Order:
    """The same checkout in single steps (SQLite, the embedded default: no row locks there,
    a write locks the whole database)."""
    cart_id = cart_id_of(user)
    # The cart row first: a second checkout of this cart waits here, then finds it empty.
    # NO KEY UPDATE: adding to the cart meanwhile (a foreign-key check) need not wait.
    session.execute(select(ShoppingCart.id).where(ShoppingCart.id == cart_id).with_for_update(key_share=True))
    lines = session.execute(
        delete(CartItem).where(CartItem.cart_id == cart_id).returning(CartItem.product_id, CartItem.quantity)
    ).all()
    if not lines:
        _refuse_empty_cart(session)
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(orders_count=User.orders_count + 1)
        .execution_options(synchronize_session=False)
    )

    wanted = {line.product_id: line.quantity for line in sorted(lines)}
    products = {
        row.id: row
        for row in session.execute(
            select(Product.id, Product.name, Product.price, Product.stock_quantity)
            .where(Product.id.in_(sorted(wanted)))
            .order_by(Product.id)
            .with_for_update(key_share=True)
        )
    }
    _refuse_short_lines(session, wanted, {row.id: row.stock_quantity for row in products.values()})

    session.execute(
        update(Product)
        .where(Product.id.in_(sorted(wanted)))
        .values(stock_quantity=Product.stock_quantity - case(wanted, value=Product.id))
        .execution_options(synchronize_session=False)
    )
    items = [
        OrderItem(
            product_id=pid, product_name=products[pid].name, quantity=quantity, price=products[pid].price
        )
        for pid, quantity in wanted.items()
    ]
    order = Order(
        user_id=user.id,
        order_status=OrderStatus.PENDING,
        shipping_address=address,
        total_amount=_total(items),
        items=items,
    )
    session.add(order)
    session.flush()
    _record(order, None, OrderStatus.PENDING, user, "placed")
    return order


def _total(items: list[OrderItem]) -> Decimal:
    return sum((item.price * item.quantity for item in items), Decimal("0")).quantize(CENT)


def _visible_order(
    actor: User, order_id: int, *, for_update: bool = False, with_details: bool = False
) -> Order:
    statement = select(Order).where(Order.id == order_id)
    if actor.role != Role.ADMIN:
        # Another user's order is "not found", never "forbidden": its existence stays private.
        statement = statement.where(Order.user_id == actor.id)
    if for_update:
        # NO KEY UPDATE: only the status changes; rows that merely refer to the order
        # (payments, events) need not wait.
        statement = statement.with_for_update(of=Order, key_share=True)
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
    return _visible_order(actor, order_id, with_details=True)


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


def move_order(order: Order, to_status: OrderStatus, actor: User | None, note: str) -> None:
    """Move an order along the status machine and record who did it; illegal moves are 409."""
    if not order.can_move_to(to_status):
        raise InvalidTransition(
            f"An order that is {order.order_status.value} cannot become {to_status.value}."
        )
    _record(order, order.order_status, to_status, actor, note)
    order.order_status = to_status


def cancel_order(actor: User, order_id: int) -> Order:
    """Cancel a pending or paid order and give its stock back, exactly once."""
    order = _visible_order(actor, order_id, for_update=True)
    try:
        move_order(order, OrderStatus.CANCELLED, actor, "cancelled")
    except InvalidTransition:
        db.session.rollback()
        raise
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
    order = _visible_order(actor, order_id, for_update=True)
    try:
        move_order(order, to_status, actor, "status changed")
    except InvalidTransition:
        db.session.rollback()
        raise
    db.session.commit()
    return get_order(actor, order_id)


# -- emails about orders: owed in the transaction of the change, sent by a job --------------

EMAILS = Counter("ecommerce_order_emails_total", "Order emails sent", ["kind"])
STALE_SENDING = timedelta(minutes=5)


def owe_order_email(session: Session, order_id: int, kind: OrderEmailKind) -> None:
    """Record, in the caller's transaction, that this email is owed; send it after the commit."""
    email_id = session.execute(
        dialect_insert(OrderEmail, session.get_bind().dialect.name)
        .values(
            order_id=order_id,
            kind=kind,
            status=OrderEmailStatus.PENDING,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["order_id", "kind"])
        .returning(OrderEmail.id)
    ).scalar()
    if email_id is not None:
        enqueue_after_commit(session, "send_order_email", email_id)


def compose_order_email(order: Order, kind: OrderEmailKind) -> EmailMessage:
    """The message, in plain text and HTML: the order number, its lines, its total."""
    customer = db.session.get(User, order.user_id)
    number = f"#{order.id}"
    if kind == OrderEmailKind.CONFIRMATION:
        subject = f"Your order {number} is confirmed"
        intro = "Thank you! We have received your payment, and your order is on its way to packing."
    else:
        subject = f"Your order {number} has been cancelled"
        intro = "Your order has been cancelled. Anything you paid for it is being refunded."
    lines = [(item.product_name, item.quantity, item.price) for item in order.items]
    text_lines = "\n".join(f"  {qty} x {name} @ {price}" for name, qty, price in lines)
    text = (
        f"Hello {customer.first_name or customer.username},\n\n{intro}\n\n"
        f"Order {number}\n{text_lines}\n\nTotal: {order.total_amount}\n"
    )
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{qty}</td><td>{price}</td></tr>" for name, qty, price in lines
    )
    body = (
        f"<p>Hello {html.escape(customer.first_name or customer.username)},</p><p>{intro}</p>"
        f"<h2>Order {number}</h2><table><tr><th>Product</th><th>Quantity</th><th>Unit price</th></tr>"
        f"{rows}</table><p><strong>Total: {order.total_amount}</strong></p>"
    )
    message = EmailMessage()
    message["To"] = customer.email
    message["Subject"] = subject
    # One Message-ID per order and kind: a resend after a crash is recognisable as the same mail.
    message["Message-ID"] = f"<order-{order.id}-{kind.value}@shop.example>"
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message


def send_order_email(email_id: int) -> None:
    """The job: send an owed email once. MailUnavailable propagates, so the job is retried.

    The row is claimed before sending (``sending``) so that two runs of the job never both
    send; a claim older than five minutes (its worker died) may be taken over.
    """
    session = db.session
    now = utcnow()
    claimed = session.execute(
        update(OrderEmail)
        .where(
            OrderEmail.id == email_id,
            (OrderEmail.status == OrderEmailStatus.PENDING)
            | (
                (OrderEmail.status == OrderEmailStatus.SENDING)
                & (OrderEmail.claimed_at < now - STALE_SENDING)
            ),
        )
        .values(
            status=OrderEmailStatus.SENDING,
            claimed_at=now,
            attempts=OrderEmail.attempts + 1,
            updated_at=now,
        )
    ).rowcount
    session.commit()
    if not claimed:
        return  # sent already, or another worker is sending it
    email = session.get(OrderEmail, email_id)
    order = session.scalar(select(Order).options(selectinload(Order.items)).where(Order.id == email.order_id))
    try:
        send_message(compose_order_email(order, email.kind))
    except Exception as exc:
        session.execute(
            update(OrderEmail)
            .where(OrderEmail.id == email_id)
            .values(status=OrderEmailStatus.PENDING, last_error=str(exc)[:255], updated_at=utcnow())
        )
        session.commit()
        raise
    session.execute(
        update(OrderEmail)
        .where(OrderEmail.id == email_id)
        .values(status=OrderEmailStatus.SENT, sent_at=utcnow(), last_error=None, updated_at=utcnow())
    )
    session.commit()
    EMAILS.labels(email.kind.value).inc()


def emails_to_retry() -> list[int]:
    """For the sweeper: emails still owed after JOB_SWEEP_AFTER_SECONDS, or stuck in sending."""
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["JOB_SWEEP_AFTER_SECONDS"])
    ids = db.session.scalars(
        select(OrderEmail.id).where(
            ((OrderEmail.status == OrderEmailStatus.PENDING) & (OrderEmail.updated_at < cutoff))
            | (
                (OrderEmail.status == OrderEmailStatus.SENDING)
                & (OrderEmail.claimed_at < now - STALE_SENDING)
            )
        )
    ).all()
    db.session.rollback()
    return list(ids)
