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
- On PostgreSQL all of it is one call of the function ``place_order()`` (migration
  0008_checkout_function), run in autocommit: one round trip, and one transaction that ends
  inside the server, so the product rows buyers contend for are locked only while the function
  runs, never while an answer travels to the app or waits for its turn in the app's event loop.
  The checkouts of a worker that arrive together share one call of ``place_orders()`` (migration
  0009, orders/batching.py), each placed by ``place_order()`` with its own outcome.
  Elsewhere (SQLite, the embedded default) the same steps run one by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

from flask import current_app, g
from prometheus_client import Counter
from sqlalchemy import case, delete, select, text, update
from sqlalchemy.orm import Session

from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.carts.services import cart_id_of
from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db.autocommit import alone
from ecommerce.core.db.failover import note_commit_sent
from ecommerce.core.db.session import locked, note_writes
from ecommerce.core.events import notify_after_commit
from ecommerce.core.idempotency import record_response
from ecommerce.core.models import utcnow
from ecommerce.errors import Conflict, InsufficientStock, ServiceUnavailable
from ecommerce.extensions import db
from ecommerce.orders.batching import batcher_of
from ecommerce.orders.models import Order, OrderItem, OrderStatus
from ecommerce.orders.services import count_transition, record_transition
from ecommerce.products.models import Product
from ecommerce.shipping.services import choose_shipping
from ecommerce.users.models import User

ORDERS_PLACED = Counter("ecommerce_orders_placed_total", "Orders placed by checkout")
STOCK_CONFLICTS = Counter("ecommerce_stock_conflicts_total", "Checkouts refused because a product was short")

CENT = Decimal("0.01")


_PLACE_ORDERS = text("SELECT place_orders(CAST(:orders AS jsonb))")
_ORDER_WRITES = ("cart_items", "products", "orders", "order_items", "order_events", "users")


@dataclass(frozen=True)
class Shipping:
    """How the order travels: a snapshot of the quote taken at checkout."""

    address: str = ""
    method: str | None = None
    cost: Decimal = Decimal("0.00")
    route: list[str] | None = None


NO_SHIPPING = Shipping()


@dataclass(frozen=True, slots=True)
class PlacedLine:
    """A line of an order ``place_orders()`` placed, as the answer shows it (OrderItemSchema)."""

    product_id: int
    product_name: str
    quantity: int
    price: Decimal
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """The order ``place_orders()`` placed, as the answer shows it (OrderSchema): plain values,
    not ORM objects. Built only for the answer, they need none of the ORM's instrumentation,
    which was 3% of a worker's samples in the checkout benchmark (docs/performance_tuning.md,
    "Fewer round trips per order")."""

    id: int
    user_id: int
    order_status: OrderStatus
    total_amount: Decimal
    shipping_address: str
    shipping_method: str | None
    shipping_cost: Decimal
    shipping_route: list[str] | None
    items: list[PlacedLine]
    created_at: datetime
    updated_at: datetime


def place_order(user: User, data: dict[str, Any]) -> Order | PlacedOrder:
    """Turn the user's whole cart into a pending order, in one transaction.

    The shipping quote (a cached table) is chosen before any of it: an unreachable destination
    is refused with nothing locked and nothing sold.
    """
    session = db.session
    shipping = _shipping_of(data)
    if session.get_bind().dialect.name == "postgresql":
        order = _check_out_in_one_call(session, user.id, shipping)
    else:
        order = _check_out_step_by_step(session, user, shipping)
        record_response(session, order)
    for item in order.items:
        invalidate_product(session, item.product_id)
        notify_after_commit(session, "product", item.product_id)  # its stock moved
    session.commit()  # on PostgreSQL the order is committed already: this runs what follows a commit
    ORDERS_PLACED.inc()
    return order


def _check_out_in_one_call(session: Session, user_id: int, shipping: Shipping) -> PlacedOrder:
    """``place_order()`` for this cart, in a call of ``place_orders()`` with the other checkouts
    of this process that arrive meanwhile (orders/batching.py), in autocommit: the call is the
    whole transaction. The request's own transaction (its reads, and the Idempotency-Key's hold,
    which the function takes again) ends first, and with it the request's hold on a connection."""
    claim = g.get("idempotency_claim")
    session.commit()
    now = utcnow()
    member = {
        "user_id": user_id,
        "address": shipping.address,
        "method": shipping.method,
        "cost": str(shipping.cost),
        "route": shipping.route,
        "now": now.isoformat(),
        "key_id": None if claim is None else claim.id,
        "key_token": None if claim is None else claim.token,
    }
    note_commit_sent()  # the call commits by itself: a lost connection leaves its outcome unknown
    app = current_app._get_current_object()
    result = batcher_of(app).submit(
        member, lambda members: _place_orders(session, members), app.config["CHECKOUT_BATCH_MAX"]
    )
    outcome = result["outcome"]
    if outcome == "empty":
        _refuse_empty_cart()
    if outcome == "short":
        STOCK_CONFLICTS.inc()
        short = result["products"]  # as _refuse_short_lines lists them
        raise InsufficientStock(
            "Not enough stock for " + "; ".join(_short_line(item) for item in short) + ".",
            products=short,
        )
    if outcome == "retry":  # its products' locks deadlocked with another batch: nothing changed
        raise ServiceUnavailable("The checkout met a concurrent one; please try again.", retry_after=1)
    if outcome == "error":  # this member alone failed in the database; the others stand
        raise RuntimeError(f"place_order() failed: {result.get('sqlstate')} {result.get('message')}")
    if outcome == "taken_over":
        raise Conflict("This Idempotency-Key was taken over by a later request.")
    if claim is not None:
        g.idempotency_claim = None  # the function stored the answer with the order
    note_writes(session, *_ORDER_WRITES)
    count_transition(OrderStatus.PENDING)  # the event the function wrote
    body = result["order"]
    items = [
        PlacedLine(
            item["product_id"], item["product_name"], item["quantity"], Decimal(item["price"]), now, now
        )
        for item in body["items"]
    ]
    return PlacedOrder(
        id=body["id"],
        user_id=user_id,
        order_status=OrderStatus.PENDING,
        total_amount=Decimal(body["total_amount"]),
        **_shipping_columns(shipping),
        items=items,
        created_at=now,
        updated_at=now,
    )


def _place_orders(session: Session, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One call of ``place_orders()`` on this request's connection, in autocommit (``alone``;
    a connection already in a transaction, as the tests' rolled-back ones are, runs the function
    inside it: the same outcome, the locks held until that transaction ends)."""
    with alone(session, writes=True, keep=True):
        return session.execute(_PLACE_ORDERS, {"orders": json.dumps(members)}).scalar_one()


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
