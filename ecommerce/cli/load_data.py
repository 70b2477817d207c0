"""Data for the JMeter load plans, made by ``flask seed --load-customers / --load-orders / --csv-dir``.

- Load customers ``load_customer_00001``... share one known password, so its argon2 hash (slow on
  purpose) is computed at most once per run and every row carries that same hash.
- Their order history is written with multi-row INSERTs, one transaction per batch of customers.
  It is history: product stock is not touched. ``users.orders_count``, which the order list reads
  its total from, is set to the real count in the transaction that adds the orders.
- Every step tops up (customers to N, orders to M per customer), so a re-run adds nothing twice.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, insert, or_, select, update

from ecommerce.auth.services import hash_password, verify_password
from ecommerce.categories.models import Category
from ecommerce.core.models import utcnow
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderEvent, OrderItem, OrderStatus
from ecommerce.products.models import Product
from ecommerce.users.models import Role, User

LOAD_USERNAME_PREFIX = "load_customer_"
LOAD_USERNAME = re.compile(rf"{LOAD_USERNAME_PREFIX}\d{{5,}}")
LOAD_EMAIL_DOMAIN = "load.example"
USER_BATCH = 5000
# Orders per transaction (their lines and events go with them).
ORDER_BATCH = 5000
# Order lines pick from this many products (a fixed sample of the catalog).
ORDER_PRODUCT_POOL = 2000
CSV_MAX_PRODUCTS = 5000
# Fixed seeds: the same database gives the same products.csv.
CSV_SEED = 20260101
ORDER_SEED = 20260102
CENT = Decimal("0.01")
HISTORY_DAYS = 365
# Argon2 verifications tried before hashing the password afresh.
MAX_HASHES_TRIED = 3

# The status mix of a real history: mostly delivered or paid, some pending or cancelled.
STATUS_WEIGHTS: dict[OrderStatus, int] = {
    OrderStatus.DELIVERED: 55,
    OrderStatus.PAID: 15,
    OrderStatus.SHIPPED: 10,
    OrderStatus.PENDING: 10,
    OrderStatus.CANCELLED: 10,
}
# How each status was reached: (status, note, time since the previous step as (min, max) minutes).
# Cancelled orders were cancelled while pending (a paid one would have owed a refund).
STATUS_PATHS: dict[OrderStatus, tuple[tuple[OrderStatus, str, tuple[int, int]], ...]] = {
    OrderStatus.PENDING: ((OrderStatus.PENDING, "placed", (0, 0)),),
    OrderStatus.PAID: (
        (OrderStatus.PENDING, "placed", (0, 0)),
        (OrderStatus.PAID, "payment succeeded", (1, 120)),
    ),
    OrderStatus.SHIPPED: (
        (OrderStatus.PENDING, "placed", (0, 0)),
        (OrderStatus.PAID, "payment succeeded", (1, 120)),
        (OrderStatus.SHIPPED, "status changed", (12 * 60, 3 * 24 * 60)),
    ),
    OrderStatus.DELIVERED: (
        (OrderStatus.PENDING, "placed", (0, 0)),
        (OrderStatus.PAID, "payment succeeded", (1, 120)),
        (OrderStatus.SHIPPED, "status changed", (12 * 60, 3 * 24 * 60)),
        (OrderStatus.DELIVERED, "status changed", (24 * 60, 6 * 24 * 60)),
    ),
    OrderStatus.CANCELLED: (
        (OrderStatus.PENDING, "placed", (0, 0)),
        (OrderStatus.CANCELLED, "cancelled", (5, 2 * 24 * 60)),
    ),
}


@dataclass(frozen=True)
class LoadCustomers:
    ids: list[int]  # in username order
    usernames: list[str]
    created: int


def load_username(number: int) -> str:
    return f"{LOAD_USERNAME_PREFIX}{number:05d}"


def _load_email(username: str) -> str:
    return f"{username}@{LOAD_EMAIL_DOMAIN}"


def _existing_load_customers() -> list:
    """(id, username, password_hash) of every load customer, in username order. Only accounts
    exactly as seed makes them (name and email): the password of anyone else is never touched."""
    candidates = db.session.execute(
        select(User.id, User.username, User.email, User.password_hash)
        .where(User.username.startswith(LOAD_USERNAME_PREFIX, autoescape=True))
        .order_by(User.username)
    ).all()
    return [
        row
        for row in candidates
        if LOAD_USERNAME.fullmatch(row.username) and row.email == _load_email(row.username)
    ]


def _shared_hash(password: str, hashes: list[str]) -> str:
    """A hash of ``password``: one the load customers already have if it matches, else a new one."""
    for candidate, _ in Counter(hashes).most_common(MAX_HASHES_TRIED):
        if verify_password(candidate, password):
            return candidate
    return hash_password(password)


def ensure_load_customers(count: int, password: str) -> LoadCustomers:
    """Top the load customers up to ``count``; every load customer (new or not) ends up an active
    customer who logs in with ``password``, as users.csv promises."""
    session = db.session
    existing = _existing_load_customers()
    have = {row.username for row in existing}
    missing = [n for n in range(1, count + 1) if load_username(n) not in have]
    if not missing and not existing:
        return LoadCustomers([], [], 0)
    password_hash = _shared_hash(password, [row.password_hash for row in existing])
    now = utcnow()
    for batch in _chunks(missing, USER_BATCH):
        session.execute(
            insert(User),
            [
                {
                    "username": load_username(n),
                    "email": _load_email(load_username(n)),
                    "password_hash": password_hash,
                    "first_name": "Load",
                    "last_name": f"Customer {n}",
                    "role": Role.CUSTOMER,
                    "is_active": True,
                    "orders_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in batch
            ],
        )
    for batch in _chunks([row.id for row in existing], USER_BATCH):
        session.execute(
            update(User)
            .where(
                User.id.in_(batch),
                or_(
                    User.password_hash != password_hash,
                    User.is_active.is_(False),
                    User.role != Role.CUSTOMER,
                ),
            )
            .values(password_hash=password_hash, is_active=True, role=Role.CUSTOMER, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    customers = _existing_load_customers()
    return LoadCustomers([row.id for row in customers], [row.username for row in customers], len(missing))


def _product_pool(rng: random.Random) -> list[tuple[int, str, Decimal]]:
    ids = list(db.session.scalars(select(Product.id).order_by(Product.id)))
    chosen = sorted(rng.sample(ids, min(len(ids), ORDER_PRODUCT_POOL)))
    pool = []
    for batch in _chunks(chosen, 500):
        pool.extend(
            db.session.execute(
                select(Product.id, Product.name, Product.price)
                .where(Product.id.in_(batch))
                .order_by(Product.id)
            ).all()
        )
    return pool


def _order_history(
    user_id: int, rng: random.Random, pool: list[tuple[int, str, Decimal]], now: datetime
) -> tuple[dict, list[dict], list[dict]]:
    """One past order: its row, its lines (at the products' current prices) and its events."""
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    path = STATUS_PATHS[status]
    steps = [timedelta(minutes=rng.randint(low, high)) for _, _, (low, high) in path]
    span = sum(steps, timedelta())
    # Every step lies in the past year, the last one before now.
    placed_at = (
        now - span - timedelta(seconds=rng.randint(0, HISTORY_DAYS * 86400 - int(span.total_seconds())))
    )
    events, at, previous = [], placed_at, None
    for (to_status, note, _), step in zip(path, steps, strict=True):
        at += step
        events.append(
            {
                "from_status": previous,
                "to_status": to_status,
                "actor_id": user_id if note in ("placed", "cancelled") else None,
                "note": note,
                "created_at": at,
            }
        )
        previous = to_status
    lines = [
        {
            "product_id": pid,
            "product_name": name,
            "quantity": rng.randint(1, 3),
            "price": price,
            # a line is written with its order
            "created_at": placed_at,
            "updated_at": placed_at,
        }
        for pid, name, price in rng.sample(pool, min(len(pool), rng.randint(1, 3)))
    ]
    order = {
        "user_id": user_id,
        "order_status": status,
        "total_amount": sum((line["price"] * line["quantity"] for line in lines), Decimal("0")).quantize(
            CENT
        ),
        "shipping_address": f"{user_id} Load Test Street, Testville",
        "created_at": placed_at,
        "updated_at": at,
    }
    return order, lines, events


def ensure_load_orders(customer_ids: list[int], per_customer: int) -> int:
    """Top every load customer's order history up to ``per_customer`` orders; the number added."""
    session = db.session
    have: dict[int, int] = {}
    for batch in _chunks(customer_ids, USER_BATCH):
        have.update(
            session.execute(
                select(Order.user_id, func.count()).where(Order.user_id.in_(batch)).group_by(Order.user_id)
            ).all()
        )
    wanted = [
        (uid, per_customer - have.get(uid, 0)) for uid in customer_ids if have.get(uid, 0) < per_customer
    ]
    if not wanted:
        return 0
    rng = random.Random(ORDER_SEED + sum(have.values()))
    pool = _product_pool(rng)
    if not pool:
        raise LookupError("The catalog has no products to put in the orders (seed --products first).")
    now = utcnow()
    added = 0
    for batch in _batches_of_orders(wanted, ORDER_BATCH):
        orders, lines, events = [], [], []
        for user_id, count in batch:
            for _ in range(count):
                order, order_lines, order_events = _order_history(user_id, rng, pool, now)
                orders.append(order)
                lines.append(order_lines)
                events.append(order_events)
        # Core INSERTs (the tables, not the ORM's bulk path): one executemany, batched into
        # multi-row VALUES by the driver, whatever None values the rows hold.
        order_ids = session.scalars(
            insert(Order.__table__).returning(Order.__table__.c.id, sort_by_parameter_order=True), orders
        ).all()
        session.execute(
            insert(OrderItem.__table__),
            [
                {**line, "order_id": oid}
                for oid, group in zip(order_ids, lines, strict=True)
                for line in group
            ],
        )
        session.execute(
            insert(OrderEvent.__table__),
            [
                {**event, "order_id": oid}
                for oid, group in zip(order_ids, events, strict=True)
                for event in group
            ],
        )
        user_ids = [user_id for user_id, _ in batch]
        session.execute(
            update(User)
            .where(User.id.in_(user_ids))
            .values(
                orders_count=select(func.count())
                .select_from(Order)
                .where(Order.user_id == User.id)
                .scalar_subquery()
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        added += len(orders)
    return added


def write_load_csvs(directory: Path, usernames: list[str], password: str) -> list[tuple[Path, int]]:
    """users.csv, products.csv (in-stock ids, shuffled with a fixed seed) and categories.csv;
    each file written and its number of data rows."""
    directory.mkdir(parents=True, exist_ok=True)
    in_stock = list(
        db.session.scalars(select(Product.id).where(Product.stock_quantity > 0).order_by(Product.id))
    )
    random.Random(CSV_SEED).shuffle(in_stock)
    categories = list(db.session.scalars(select(Category.id).order_by(Category.id)))
    files = {
        "users.csv": (("username", "password"), [(name, password) for name in usernames]),
        "products.csv": (("product_id",), [(pid,) for pid in in_stock[:CSV_MAX_PRODUCTS]]),
        "categories.csv": (("category_id",), [(cid,) for cid in categories]),
    }
    written = []
    for name, (header, rows) in files.items():
        path = directory / name
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        written.append((path, len(rows)))
    return written


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batches_of_orders(wanted: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """Whole customers per batch (their orders_count is set with their orders), about ``size``
    orders each."""
    batch, orders = [], 0
    for user_id, count in wanted:
        batch.append((user_id, count))
        orders += count
        if orders >= size:
            yield batch
            batch, orders = [], 0
    if batch:
        yield batch
