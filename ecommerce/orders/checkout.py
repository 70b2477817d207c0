"""Checkout: the user's whole cart becomes a pending order, in one transaction.

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
  statement: see ``_WRITE_ORDER``. Elsewhere (SQLite, the embedded default) the same steps run
  one by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from prometheus_client import Counter
from sqlalchemy import case, delete, select, text, update
from sqlalchemy.orm import Session

from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.carts.services import cart_id_of
from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db.session import locked, note_writes
from ecommerce.core.events import notify_after_commit
from ecommerce.core.idempotency import record_response
from ecommerce.core.models import utcnow
from ecommerce.errors import Conflict, InsufficientStock
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderItem, OrderStatus
from ecommerce.orders.services import count_transition, record_transition
from ecommerce.products.models import Product
from ecommerce.shipping.services import choose_shipping
from ecommerce.users.models import User

ORDERS_PLACED = Counter("ecommerce_orders_placed_total", "Orders placed by checkout")
STOCK_CONFLICTS = Counter("ecommerce_stock_conflicts_total", "Checkouts refused because a product was short")

CENT = Decimal("0.01")


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
    INSERT INTO orders (user_id, order_status, total_amount, shipping_address, shipping_method,
                        shipping_cost, shipping_route, created_at, updated_at)
    SELECT :user_id, :pending, sum(price * quantity) + :shipping_cost, :address, :shipping_method,
           :shipping_cost, CAST(:shipping_route AS json), :now, :now
    FROM taken
    RETURNING id
),
items AS (
    INSERT INTO order_items (order_id, product_id, product_name, quantity, price, created_at,
                             updated_at)
    SELECT placed.id, taken.id, taken.name, taken.quantity, taken.price, :now, :now
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


@dataclass(frozen=True)
class Shipping:
    """How the order travels: a snapshot of the quote taken at checkout."""

    address: str = ""
    method: str | None = None
    cost: Decimal = Decimal("0.00")
    route: list[str] | None = None


NO_SHIPPING = Shipping()


def place_order(user: User, data: dict[str, Any]) -> Order:
    """Turn the user's whole cart into a pending order, in one transaction.

    On PostgreSQL the checkout is two statements: one takes the cart and locks its products,
    the other writes the order. The product locks, the only ones buyers contend for, are held
    for the fewest round trips: the second statement, the stored Idempotency-Key response (if
    any) and the commit. The shipping quote (a cached table) is chosen before any of it: an
    unreachable destination is refused with nothing locked and nothing sold.
    """
    session = db.session
    shipping = _shipping_of(data)
    if session.get_bind().dialect.name == "postgresql":
        order = _check_out_in_two_statements(session, user, shipping)
    else:
        order = _check_out_step_by_step(session, user, shipping)
    for item in order.items:
        invalidate_product(session, item.product_id)
        notify_after_commit(session, "product", item.product_id)  # its stock moved
    record_response(session, order)
    session.commit()
    ORDERS_PLACED.inc()
    return order


def _shipping_of(data: dict[str, Any]) -> Shipping:
    address = data.get("shipping_address", "")
    if "shipping" not in data:
        return Shipping(address=address)
    choice = choose_shipping(data["shipping"]["to"], data["shipping"]["method"])
    return Shipping(address, choice["method"], choice["cost"], list(choice["route"]))


def _refuse_empty_cart() -> NoReturn:
    raise Conflict("Your cart is empty.")


def _refuse_short_lines(wanted: dict[int, int], stock: dict[int, int], names: dict[int, str]) -> None:
    """409 naming every short product, for a person (the detail) and for a program (``products``;
    ``stock`` and ``names`` lack products that no longer exist). Nothing stays changed: the
    request's unit of work rolls back on the error, the cart's lines with it."""
    short = [
        {
            "product_id": product_id,
            "name": names.get(product_id),
            "requested": quantity,
            "available": stock.get(product_id, 0),
        }
        for product_id, quantity in wanted.items()
        if product_id not in stock or stock[product_id] < quantity
    ]
    if short:
        STOCK_CONFLICTS.inc()
        raise InsufficientStock(
            "Not enough stock for " + "; ".join(_short_line(item) for item in short) + ".",
            products=short,
        )


def _short_line(item: dict[str, Any]) -> str:
    if item["name"] is None:
        return f"product {item['product_id']}, which is no longer sold"
    left = "none left" if item["available"] == 0 else f"only {item['available']} left"
    return f"{item['name']} ({left}, {item['requested']} in the cart)"


def _check_out_in_two_statements(session: Session, user: User, shipping: Shipping) -> Order:
    rows = session.execute(_TAKE_CART, {"user_id": user.id}).all()
    if not rows:
        _refuse_empty_cart()
    wanted = {row.product_id: row.quantity for row in rows}
    _refuse_short_lines(
        wanted,
        {row.product_id: row.stock_quantity for row in rows if row.stock_quantity is not None},
        {row.product_id: row.name for row in rows if row.name is not None},
    )
    now = utcnow()
    order_id, taken = session.execute(
        _WRITE_ORDER,
        {
            "product_ids": list(wanted),
            "quantities": list(wanted.values()),
            "user_id": user.id,
            "pending": OrderStatus.PENDING.value,
            "address": shipping.address,
            "shipping_method": shipping.method,
            "shipping_cost": shipping.cost,
            "shipping_route": None if shipping.route is None else json.dumps(shipping.route),
            "now": now,
            "note": "placed",
        },
    ).one()
    note_writes(session, *_ORDER_WRITES)
    if taken != len(wanted):  # every product row is locked by us: cannot happen
        raise RuntimeError(f"checkout updated {taken} of {len(wanted)} products; rolled back")
    count_transition(OrderStatus.PENDING)  # the event written above
    # The order as written, for the response (the rows are locked: these are the values stored).
    items = [
        OrderItem(
            order_id=order_id,
            product_id=row.product_id,
            product_name=row.name,
            quantity=row.quantity,
            price=row.price,
            created_at=now,
            updated_at=now,
        )
        for row in rows
    ]
    return Order(
        id=order_id,
        user_id=user.id,
        order_status=OrderStatus.PENDING,
        total_amount=_total(items, shipping),
        **_shipping_columns(shipping),
        created_at=now,
        updated_at=now,
        items=items,
    )


def _check_out_step_by_step(session: Session, user: User, shipping: Shipping) -> Order:
    """The same checkout in single steps (SQLite, the embedded default: no row locks there,
    a write locks the whole database)."""
    cart_id = cart_id_of(user)
    # The cart row first: a second checkout of this cart waits here, then finds it empty.
    # NO KEY UPDATE: adding to the cart meanwhile (a foreign-key check) need not wait.
    session.execute(locked(select(ShoppingCart.id).where(ShoppingCart.id == cart_id), key_share=True))
    lines = session.execute(
        delete(CartItem).where(CartItem.cart_id == cart_id).returning(CartItem.product_id, CartItem.quantity)
    ).all()
    if not lines:
        _refuse_empty_cart()
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
            locked(
                select(Product.id, Product.name, Product.price, Product.stock_quantity)
                .where(Product.id.in_(sorted(wanted)))
                .order_by(Product.id),
                key_share=True,
            )
        )
    }
    _refuse_short_lines(
        wanted,
        {row.id: row.stock_quantity for row in products.values()},
        {row.id: row.name for row in products.values()},
    )

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
        total_amount=_total(items, shipping),
        **_shipping_columns(shipping),
        items=items,
    )
    session.add(order)
    session.flush()
    record_transition(order, None, OrderStatus.PENDING, user, "placed")
    return order


def _shipping_columns(shipping: Shipping) -> dict[str, Any]:
    return {
        "shipping_address": shipping.address,
        "shipping_method": shipping.method,
        "shipping_cost": shipping.cost,
        "shipping_route": shipping.route,
    }


def _total(items: list[OrderItem], shipping: Shipping) -> Decimal:
    lines = sum((item.price * item.quantity for item in items), Decimal("0"))
    return (lines + shipping.cost).quantize(CENT)
