"""Checkout, Idempotency-Key and cancel under real concurrency, on PostgreSQL.

Every racer is a thread with its own test client (so its own database connection), spread over
two app instances that share PostgreSQL and Redis; all data is committed. What must hold:
no oversell, no deadlock (whatever order the carts list the products in), an order either has
every line or does not exist, one Idempotency-Key makes one order, a cancel gives the stock back
exactly once, another user's things are "not found", and a cart line edited or removed during
its checkout is either ordered as edited or not ordered at all. The Idempotency-Key claim's
takeover rules are exercised directly as well.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from datetime import timedelta

import psycopg2
import pytest
from flask import Flask, g
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import make_url

from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.categories.models import Category
from ecommerce.core.idempotency import (
    CLAIM_GRACE,
    STALE_CLAIM,
    Claim,
    IdempotencyKey,
    Replay,
    ResponseShape,
    claim,
    record_response,
)
from ecommerce.core.models import utcnow
from ecommerce.errors import Conflict, ValidationFailed
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderEvent, OrderItem, OrderStatus
from ecommerce.products.models import Product
from tests.factories import AdminFactory, ProductFactory, UserFactory
from tests.helpers import bearer, login, run_concurrently

# Two instances of at most 15 connections each (no overflow, so no connect/disconnect churn):
# 200 racers queue for them (pool timeout 60 s), and the server's max_connections (100) is
# shared with other test runs.
POOL = {"DB_POOL_SIZE": 15, "DB_MAX_OVERFLOW": 0, "DB_POOL_TIMEOUT": 60}
PROBLEM = "application/problem+json"
SETUP_WORKERS = 10


@pytest.fixture
def instances(make_instance) -> tuple[Flask, Flask]:
    return make_instance(**POOL), make_instance(**POOL)


# --- helpers -------------------------------------------------------------------------------


def make_users(app: Flask, count: int, factory=UserFactory) -> list[tuple[int, str]]:
    """``count`` users in one commit: (id, username)."""
    with app.app_context():
        users = factory.build_batch(count)
        db.session.add_all(users)
        db.session.commit()
        return [(user.id, user.username) for user in users]


def make_product(app: Flask, stock: int) -> int:
    with app.app_context():
        return ProductFactory(stock_quantity=stock).id


def in_parallel(function, items, workers: int = SETUP_WORKERS) -> list:
    """Setup for many users at once (each call its own client): ``function`` over ``items``."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, timeout=60))


def tokens_for(app: Flask, users: list[tuple[int, str]]) -> list[str]:
    return in_parallel(lambda user: login(app.test_client(), user[1])["access_token"], users)


def add_to_cart(client, token: str, product_id: int, quantity: int) -> int:
    response = client.post(
        "/api/cart/items/", json={"product_id": product_id, "quantity": quantity}, headers=bearer(token)
    )
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()["id"]


def checkout(client, token: str, key: str | None = None, body: dict | None = None):
    headers = bearer(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/api/orders/", json=body if body is not None else {}, headers=headers)


def cancel(client, token: str, order_id: int):
    return client.post(f"/api/orders/{order_id}/cancel/", headers=bearer(token))


def stock_of(app: Flask, *product_ids: int) -> dict[int, int]:
    with app.app_context():
        rows = db.session.execute(
            select(Product.id, Product.stock_quantity).where(Product.id.in_(product_ids))
        ).all()
        return {row.id: row.stock_quantity for row in rows}


def cart_lines(app: Flask, user_id: int) -> list[tuple[int, int]]:
    """(product_id, quantity) of the user's cart lines, in line-id order."""
    with app.app_context():
        return [
            (row.product_id, row.quantity)
            for row in db.session.execute(
                select(CartItem.product_id, CartItem.quantity)
                .join(ShoppingCart, ShoppingCart.id == CartItem.cart_id)
                .where(ShoppingCart.user_id == user_id)
                .order_by(CartItem.id)
            )
        ]


def describe(responses) -> list:
    return [(r.status_code, r.get_json(silent=True)) for r in responses]


@contextmanager
def probe(app: Flask) -> Iterator:
    """A direct autocommit connection to the test database, outside every app pool."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    connection = psycopg2.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=url.database,
        application_name="checkout-concurrency-probe",
    )
    connection.autocommit = True
    with closing(connection):
        yield connection


def backend_pids(connection) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


def deadlock_count(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def settled_deadlock_count(connection, instances, pids_before: set[int], timeout: float = 10) -> int:
    """The deadlock counter once every backend the instances opened has exited.

    A backend flushes its statistics before it leaves pg_stat_activity, so closing the
    instances' pools and waiting for their backends to go makes the count complete."""
    for instance in instances:
        with instance.app_context():
            db.session.remove()
            db.engine.dispose()
    deadline = time.monotonic() + timeout
    while backend_pids(connection) - pids_before:
        assert time.monotonic() < deadline, "the instances' database backends did not exit"
        threading.Event().wait(0.02)
    return deadlock_count(connection)


# --- (a) no oversell -----------------------------------------------------------------------

BUYERS = 200
IN_STOCK = 20


def test_two_hundred_buyers_race_for_twenty_units(instances):
    a, b = instances
    product_id = make_product(a, IN_STOCK)
    users = make_users(a, BUYERS)
    tokens = tokens_for(a, users)
    in_parallel(lambda token: add_to_cart(a.test_client(), token, product_id, 1), tokens)

    with a.app_context():
        name = db.session.get(Product, product_id).name
    clients = [(a, b)[n % 2].test_client() for n in range(BUYERS)]
    responses = run_concurrently(
        [lambda c=c, t=t: checkout(c, t) for c, t in zip(clients, tokens, strict=True)]
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {201: IN_STOCK, 409: BUYERS - IN_STOCK}, describe(
        r for r in responses if r.status_code not in (201, 409)
    )
    winners = [(user, r.get_json()) for user, r in zip(users, responses, strict=True) if r.status_code == 201]
    losers = [(user, r) for user, r in zip(users, responses, strict=True) if r.status_code == 409]
    for _, response in losers:
        assert response.headers["Content-Type"] == PROBLEM
        body = response.get_json()
        assert body["status"] == 409 and body["title"] == "Insufficient stock", body
        assert body["detail"] == f"Not enough stock for {name} (none left, 1 in the cart)."
        assert body["products"] == [{"product_id": product_id, "name": name, "requested": 1, "available": 0}]
    for (user_id, _), order in winners:
        assert order["user_id"] == user_id and order["order_status"] == "pending"
        assert order["items"] == [{**order["items"][0], "product_id": product_id, "quantity": 1}]

    assert stock_of(a, product_id) == {product_id: 0}
    with a.app_context():
        assert db.session.scalar(select(func.sum(OrderItem.quantity))) == IN_STOCK
        stored = dict(db.session.execute(select(Order.id, Order.user_id)).all())
    assert stored == {order["id"]: user_id for (user_id, _), order in winners}
    for (user_id, _), _order in winners:
        assert cart_lines(a, user_id) == []
    for (user_id, _), _response in losers:
        assert cart_lines(a, user_id) == [(product_id, 1)]


# --- (b) no deadlock -----------------------------------------------------------------------

PAIRS = 20
ROUNDS = 2


def test_opposite_cart_orders_never_deadlock(app, instances):
    a, b = instances
    with probe(app) as connection:
        pids_before = backend_pids(connection)
        deadlocks_before = deadlock_count(connection)

        x, y = make_product(a, 1000), make_product(a, 1000)
        users = make_users(a, 2 * PAIRS)
        tokens = tokens_for(a, users)
        # Even users add X then Y, odd users Y then X: their cart lines' ids (and insertion
        # order) list the two products in opposite orders. Quantities differ too.
        carts = [[(x, 1), (y, 2)] if n % 2 == 0 else [(y, 1), (x, 3)] for n in range(2 * PAIRS)]
        clients = [(a, b)[n % 2].test_client() for n in range(2 * PAIRS)]

        def fill(n: int) -> None:
            for product_id, quantity in carts[n]:  # in this order, so the line ids are too
                add_to_cart(a.test_client(), tokens[n], product_id, quantity)

        orders: list[tuple[int, dict]] = []
        for _ in range(ROUNDS):
            in_parallel(fill, range(2 * PAIRS))
            for (user_id, _), lines in zip(users, carts, strict=True):
                assert cart_lines(a, user_id) == lines

            responses = run_concurrently(
                [lambda c=c, t=t: checkout(c, t) for c, t in zip(clients, tokens, strict=True)]
            )

            assert [r.status_code for r in responses] == [201] * len(responses), describe(
                r for r in responses if r.status_code != 201
            )
            orders += [(user_id, r.get_json()) for (user_id, _), r in zip(users, responses, strict=True)]

        assert settled_deadlock_count(connection, instances, pids_before) == deadlocks_before

    ordered = {x: 0, y: 0}
    for lines in carts:
        for product_id, quantity in lines:
            ordered[product_id] += quantity * ROUNDS
    assert stock_of(a, x, y) == {x: 1000 - ordered[x], y: 1000 - ordered[y]}

    with a.app_context():
        stored: dict[int, set] = {}
        for row in db.session.execute(select(OrderItem.order_id, OrderItem.product_id, OrderItem.quantity)):
            stored.setdefault(row.order_id, set()).add((row.product_id, row.quantity))
        owners = dict(db.session.execute(select(Order.id, Order.user_id)).all())
    assert len(stored) == len(orders) == 2 * PAIRS * ROUNDS
    by_user = {user_id: set(lines) for (user_id, _), lines in zip(users, carts, strict=True)}
    for user_id, order in orders:
        # every order has both its lines, with its own cart's quantities
        assert owners[order["id"]] == user_id
        assert stored[order["id"]] == by_user[user_id]
        assert {(i["product_id"], i["quantity"]) for i in order["items"]} == by_user[user_id]


# --- (c) one Idempotency-Key, ten parallel sends -------------------------------------------


def test_one_idempotency_key_sent_ten_times_at_once_makes_one_order(instances):
    a, b = instances
    product_id = make_product(a, 10)
    [(user_id, username)] = make_users(a, 1)
    [token] = tokens_for(a, [(user_id, username)])
    add_to_cart(a.test_client(), token, product_id, 2)
    body = {"shipping_address": "1 Race Street"}
    clients = [(a, b)[n % 2].test_client() for n in range(10)]

    responses = run_concurrently([lambda c=c: checkout(c, token, "race-key-1", body) for c in clients])

    assert {r.status_code for r in responses} <= {201, 409}, describe(responses)
    created = [r for r in responses if r.status_code == 201]
    first = [r for r in created if "Idempotent-Replayed" not in r.headers]
    assert len(first) == 1, describe(responses)
    order = first[0].get_json()
    for response in created:
        if response is not first[0]:
            assert response.headers["Idempotent-Replayed"] == "true"
            assert response.get_json() == order
    for response in responses:
        if response.status_code == 409:
            problem = response.get_json()
            assert response.headers["Content-Type"] == PROBLEM
            assert "still being processed" in problem["detail"], problem

    with a.app_context():
        assert db.session.scalars(select(Order.id)).all() == [order["id"]]
        key = db.session.scalar(select(IdempotencyKey))
        assert key.state == "completed" and key.response_status == 201
    assert stock_of(a, product_id) == {product_id: 8}
    assert cart_lines(a, user_id) == []

    for client in (a.test_client(), b.test_client()):
        retry = checkout(client, token, "race-key-1", body)
        assert retry.status_code == 201
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.get_json()["id"] == order["id"]
        assert retry.get_json() == order
    assert stock_of(a, product_id) == {product_id: 8}
    with a.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1


# --- (d) racing cancels --------------------------------------------------------------------


@pytest.mark.parametrize(
    "racers", [("owner", "owner"), ("owner", "admin") * 5], ids=["owner-twice", "mixed-10"]
)
def test_racing_cancels_give_the_stock_back_once(instances, racers):
    a, b = instances
    product_id, other_id = make_product(a, 10), make_product(a, 10)
    [owner] = make_users(a, 1)
    [admin] = make_users(a, 1, AdminFactory)
    owner_token, admin_token = tokens_for(a, [owner, admin])
    setup = a.test_client()
    add_to_cart(setup, owner_token, product_id, 3)
    add_to_cart(setup, owner_token, other_id, 4)
    placed = checkout(setup, owner_token)
    assert placed.status_code == 201, placed.get_json()
    order_id = placed.get_json()["id"]
    assert stock_of(a, product_id, other_id) == {product_id: 7, other_id: 6}

    tokens = {"owner": owner_token, "admin": admin_token}
    clients = [(a, b)[n % 2].test_client() for n in range(len(racers))]
    responses = run_concurrently(
        [
            lambda c=c, who=who: cancel(c, tokens[who], order_id)
            for c, who in zip(clients, racers, strict=True)
        ]
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: len(racers) - 1}, describe(responses)
    winner = next(r.get_json() for r in responses if r.status_code == 200)
    assert winner["order_status"] == "cancelled"
    for response in responses:
        if response.status_code == 409:
            assert response.headers["Content-Type"] == PROBLEM
            assert response.get_json()["title"] == "Illegal state change"
    assert stock_of(a, product_id, other_id) == {product_id: 10, other_id: 10}
    with a.app_context():
        events = db.session.scalars(
            select(OrderEvent.to_status).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
        ).all()
        assert events == [OrderStatus.PENDING, OrderStatus.CANCELLED]
    again = cancel(b.test_client(), owner_token, order_id)
    assert again.status_code == 409
    assert stock_of(a, product_id, other_id) == {product_id: 10, other_id: 10}


# --- (e) another user's things are not found -----------------------------------------------


def test_another_users_order_cart_line_and_wishlist_item_are_not_found(instances):
    a, b = instances
    product_id, kept_id = make_product(a, 10), make_product(a, 10)
    owner, stranger = make_users(a, 2)
    owner_token, stranger_token = tokens_for(a, [owner, stranger])
    on_a, on_b = a.test_client(), b.test_client()
    add_to_cart(on_a, owner_token, product_id, 1)
    placed = checkout(on_a, owner_token)
    assert placed.status_code == 201
    order_id = placed.get_json()["id"]
    line_id = add_to_cart(on_a, owner_token, kept_id, 2)
    wished = on_a.post("/api/wishlist/items/", json={"product_id": kept_id}, headers=bearer(owner_token))
    assert wished.status_code == 201
    wish_id = wished.get_json()["id"]

    for client in (on_a, on_b):
        headers = bearer(stranger_token)
        attempts = [
            client.get(f"/api/orders/{order_id}/", headers=headers),
            client.post(f"/api/orders/{order_id}/cancel/", headers=headers),
            client.patch(f"/api/cart/items/{line_id}/", json={"quantity": 5}, headers=headers),
            client.delete(f"/api/cart/items/{line_id}/", headers=headers),
            client.delete(f"/api/wishlist/items/{wish_id}/", headers=headers),
        ]
        assert [r.status_code for r in attempts] == [404] * len(attempts), describe(attempts)
        assert all(r.headers["Content-Type"] == PROBLEM for r in attempts)

    # Nothing of the owner's moved.
    assert on_b.get(f"/api/orders/{order_id}/", headers=bearer(owner_token)).get_json()["order_status"] == (
        "pending"
    )
    assert cart_lines(a, owner[0]) == [(kept_id, 2)]
    wishlist = on_b.get("/api/wishlist/", headers=bearer(owner_token)).get_json()
    assert [item["id"] for item in wishlist["items"]] == [wish_id]
    assert stock_of(a, product_id) == {product_id: 9}


# --- (f) mixed load ------------------------------------------------------------------------

LOAD_THREADS = 30
LOAD_ADMINS = 3
LOAD_SECONDS = 3.0
MAX_ITERATIONS = 200


def test_mixed_checkouts_and_cancels_keep_stock_exact(app, instances):
    a, b = instances
    initial = {make_product(a, stock): stock for stock in (15, 20, 25, 30)}
    products = sorted(initial)
    customers = make_users(a, LOAD_THREADS - LOAD_ADMINS)
    admins = make_users(a, LOAD_ADMINS, AdminFactory)
    customer_tokens = tokens_for(a, customers)
    admin_tokens = tokens_for(a, admins)

    lock = threading.Lock()
    placed: list[tuple[int, str]] = []  # (order id, owner's token)
    unexpected: list[tuple[str, int, object]] = []
    stats = Counter()
    stop = threading.Event()
    lowest = dict(initial)

    def record(operation: str, response, allowed: tuple[int, ...]) -> None:
        with lock:
            stats[(operation, response.status_code)] += 1
            if response.status_code not in allowed:
                unexpected.append((operation, response.status_code, response.get_json()))

    def customer(client, token: str, seed: int) -> None:
        rng = random.Random(seed)
        mine: list[int] = []
        deadline = time.monotonic() + LOAD_SECONDS
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() >= deadline:
                return
            for product_id in rng.sample(products, rng.randint(1, 3)):
                response = client.post(
                    "/api/cart/items/",
                    json={"product_id": product_id, "quantity": rng.randint(1, 3)},
                    headers=bearer(token),
                )
                record("add", response, (200, 201))
            response = checkout(client, token)
            record("checkout", response, (201, 409))
            if response.status_code == 201:
                order_id = response.get_json()["id"]
                mine.append(order_id)
                with lock:
                    placed.append((order_id, token))
            else:
                record("empty cart", client.delete("/api/cart/", headers=bearer(token)), (204,))
            if mine and rng.random() < 0.5:
                record("cancel", cancel(client, token, mine.pop(rng.randrange(len(mine)))), (200, 409))

    def admin(client, token: str, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + LOAD_SECONDS
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() >= deadline:
                return
            with lock:
                target = rng.choice(placed)[0] if placed else None
            if target is None:
                listed = client.get("/api/orders/", headers=bearer(token))
                record("list", listed, (200,))
                continue
            record("admin cancel", cancel(client, token, target), (200, 409))

    def watch(connection) -> None:
        # Sample the stock while the load runs: it must never be seen below zero.
        while not stop.is_set():
            with connection.cursor() as cursor:
                cursor.execute("SELECT id, stock_quantity FROM products")
                for product_id, quantity in cursor.fetchall():
                    lowest[product_id] = min(lowest[product_id], quantity)
            stop.wait(0.02)

    with probe(app) as connection:
        pids_before = backend_pids(connection)
        deadlocks_before = deadlock_count(connection)
        clients = [(a, b)[n % 2].test_client() for n in range(LOAD_THREADS)]
        calls = [
            lambda c=c, t=t, n=n: customer(c, t, n)
            for n, (c, t) in enumerate(zip(clients, customer_tokens, strict=False))
        ] + [
            lambda c=c, t=t, n=n: admin(c, t, 1000 + n)
            for n, (c, t) in enumerate(zip(clients[len(customer_tokens) :], admin_tokens, strict=True))
        ]
        with probe(app) as watcher_connection:
            watcher = threading.Thread(target=watch, args=(watcher_connection,))
            watcher.start()
            try:
                run_concurrently(calls, timeout=LOAD_SECONDS + 30)
            finally:
                stop.set()
                watcher.join(timeout=10)
        assert not watcher.is_alive()
        assert settled_deadlock_count(connection, instances, pids_before) == deadlocks_before

    assert unexpected == [], unexpected[:10]
    # The load really mixed things: orders made, some refused for stock, some cancelled.
    assert stats[("checkout", 201)] > 0 and stats[("checkout", 409)] > 0, stats
    assert stats[("cancel", 200)] + stats[("admin cancel", 200)] > 0, stats
    assert min(lowest.values()) >= 0, lowest

    with a.app_context():
        kept = dict.fromkeys(products, 0)
        for product_id, quantity in db.session.execute(
            select(OrderItem.product_id, func.sum(OrderItem.quantity))
            .join(Order, Order.id == OrderItem.order_id)
            .where(Order.order_status != OrderStatus.CANCELLED)
            .group_by(OrderItem.product_id)
        ):
            kept[product_id] = quantity
        orders = dict(db.session.execute(select(Order.id, Order.order_status)).all())
        cancellations = Counter(
            db.session.scalars(
                select(OrderEvent.order_id).where(OrderEvent.to_status == OrderStatus.CANCELLED)
            )
        )
    current = stock_of(a, *products)
    for product_id in products:
        assert initial[product_id] - kept[product_id] == current[product_id] >= 0, (product_id, kept, current)
    assert set(orders) == {order_id for order_id, _ in placed}
    # Each cancelled order was cancelled (and restocked) exactly once.
    assert {order_id for order_id, s in orders.items() if s == OrderStatus.CANCELLED} == set(cancellations)
    assert set(cancellations.values()) <= {1}
    assert cancellations.total() == stats[("cancel", 200)] + stats[("admin cancel", 200)]


# --- the idempotency claim, directly -------------------------------------------------------


def other_session_claims(app: Flask, *args: str | int) -> Claim | Replay:
    """``claim`` as another request would make it: its own session and connection."""
    with app.app_context():
        try:
            return claim(*args)
        finally:
            db.session.rollback()


def test_a_claim_whose_owner_is_gone_is_taken_over_and_the_old_call_cannot_complete(app, committed):
    scope, key, fingerprint = "orders:create", "takeover-key", "f" * 64
    with app.app_context():
        user_id = UserFactory().id
        old = claim(user_id, scope, key, fingerprint)
        assert isinstance(old, Claim)
        # Its owner is at work (it holds the key's row lock): another call is told so at once.
        started = time.monotonic()
        with pytest.raises(Conflict, match="still being processed"):
            other_session_claims(app, user_id, scope, key, fingerprint)
        assert time.monotonic() - started < 2  # NOWAIT: no waiting for the owner
        with pytest.raises((Conflict, ValidationFailed)):
            other_session_claims(app, user_id, scope, key, "0" * 64)

        # Its owner "dies" (its transaction ends without completing, as when its process or its
        # database connection is lost): the key is in_progress but unlocked. Within CLAIM_GRACE
        # that is the owner's moment between claim and lock, so still 409; after it, taken over.
        db.session.rollback()
        assert db.session.scalar(select(IdempotencyKey.state)) == "in_progress"
        with pytest.raises(Conflict, match="still being processed"):
            other_session_claims(app, user_id, scope, key, fingerprint)
        db.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == old.id)
            .values(created_at=utcnow() - CLAIM_GRACE - timedelta(seconds=1))
        )
        db.session.commit()
        new = claim(user_id, scope, key, fingerprint)
        assert isinstance(new, Claim)
        assert new.id == old.id and new.token != old.token

        # The stale call wakes up and tries to finish its work under the old token.
        db.session.add(Category(name="written by the stale call", description=""))
        g.idempotency_claim = old
        g.idempotency_shape = ResponseShape(201, lambda result: result)
        with pytest.raises(Conflict, match="taken over"):
            record_response(db.session, {"id": 1})
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Category)) == 0
        row = db.session.scalar(select(IdempotencyKey))
        assert (row.state, row.claim_token, row.response_status) == ("in_progress", new.token, None)

        # The new call completes; from then on the key replays its response.
        g.idempotency_claim = new
        record_response(db.session, {"id": 2, "order_status": "pending"})
        db.session.commit()
        assert g.idempotency_claim is None
        replay = claim(user_id, scope, key, fingerprint)
        assert isinstance(replay, Replay)
        assert replay.status == 201 and replay.content_type == "application/json"
        assert json.loads(replay.body) == {"id": 2, "order_status": "pending"}
        # A completed key is never taken over, however old its claim.
        db.session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - STALE_CLAIM - timedelta(minutes=1))
        )
        db.session.commit()
        assert isinstance(claim(user_id, scope, key, fingerprint), Replay)


def test_a_claim_whose_key_row_vanishes_under_it_claims_afresh(app, committed):
    """An earlier call with the key fails and releases its claim (or the purge removes the row)
    right after this call's INSERT found the row: the key is free, not a 500."""
    scope, key, fingerprint = "orders:create", "vanishing-key", "e" * 64
    with app.app_context():
        user_id = UserFactory().id
        first = claim(user_id, scope, key, fingerprint)
        assert isinstance(first, Claim)
        db.session.rollback()  # the earlier call's transaction ends (and its row lock with it)
        released = threading.Event()

        def release_after_insert(_conn, _cursor, statement, *_args) -> None:
            if statement.startswith("INSERT INTO idempotency_keys") and not released.is_set():
                released.set()
                with probe(app) as other, other.cursor() as cursor:
                    cursor.execute(
                        "DELETE FROM idempotency_keys WHERE id = %s AND claim_token = %s",
                        (first.id, first.token),
                    )
                    assert cursor.rowcount == 1

        event.listen(db.engine, "after_cursor_execute", release_after_insert)
        try:
            second = claim(user_id, scope, key, fingerprint)
        finally:
            event.remove(db.engine, "after_cursor_execute", release_after_insert)
        assert released.is_set()
        assert isinstance(second, Claim) and second.token != first.token
        row = db.session.scalar(select(IdempotencyKey))
        assert (row.id, row.state, row.claim_token) == (second.id, "in_progress", second.token)


# --- a cart edited while it is checked out -------------------------------------------------

EDIT_ROUNDS = 15


def test_a_cart_line_edited_and_removed_during_checkout(instances):
    """Checkout, PATCHes and DELETEs of the same cart line at once: every answer must fit some
    serial order (a line removed with 204 is not ordered, a quantity set with 200 is the one
    ordered), and none is a 500."""
    a, b = instances
    product_id = make_product(a, 100_000)
    [(user_id, username)] = make_users(a, 1)
    [token] = tokens_for(a, [(user_id, username)])
    patches = [2, 3, 4, 5]
    for _ in range(EDIT_ROUNDS):
        line_id = add_to_cart(a.test_client(), token, product_id, 1)
        clients = [(a, b)[n % 2].test_client() for n in range(1 + len(patches) + 3)]
        url = f"/api/cart/items/{line_id}/"
        calls = [lambda c=clients[0]: checkout(c, token)]
        calls += [
            lambda c=c, q=q, url=url: c.patch(url, json={"quantity": q}, headers=bearer(token))
            for c, q in zip(clients[1:], patches, strict=False)
        ]
        calls += [
            lambda c=c, url=url: c.delete(url, headers=bearer(token)) for c in clients[1 + len(patches) :]
        ]

        placed, *rest = run_concurrently(calls)

        edits, removals = rest[: len(patches)], rest[len(patches) :]
        assert placed.status_code in (201, 409), placed.get_json()
        assert {r.status_code for r in edits} <= {200, 404}, describe(edits)
        assert {r.status_code for r in removals} <= {204, 404}, describe(removals)
        removed = [r for r in removals if r.status_code == 204]
        set_to = [q for q, r in zip(patches, edits, strict=True) if r.status_code == 200]
        if placed.status_code == 201:
            # Ordered: nobody removed the line first, and the last quantity set before it counts.
            assert removed == [], describe(rest)
            [item] = placed.get_json()["items"]
            assert item["quantity"] in (set_to or [1]), (item, describe(edits))
        else:
            assert placed.get_json()["detail"] == "Your cart is empty."
            assert len(removed) == 1, describe(removals)
        assert cart_lines(a, user_id) == []
