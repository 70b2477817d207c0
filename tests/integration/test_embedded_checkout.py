"""Checkout on the embedded default (no DATABASE_URL, no REDIS_URL): SQLite has no row locks, so
the checkout runs its steps one by one there (ecommerce/orders/checkout.py), a path PostgreSQL
never takes. Every test drives an app on a SQLite file of its own, built by the real migrations,
through its HTTP API, and reads the database behind it to see what stayed."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select

from ecommerce.carts.models import CartItem
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderItem
from ecommerce.products.models import Product
from ecommerce.tasks import configure_queue
from ecommerce.users.models import User
from tests.factories import PASSWORD
from tests.helpers import assert_problem, bearer, invoke_cli, login

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "migrations")


@pytest.fixture
def shop(app: Flask, build_app, tmp_path) -> Flask:
    """An app as ``make run`` starts it without DATABASE_URL: SQLite in its own folder, the cache
    and rate limits in process, the job queue in a SQLite file; with an admin made by the CLI."""
    instance = build_app(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'shop.db'}",
        REDIS_URL=None,
        HUEY_SQLITE_PATH=str(tmp_path / "huey.db"),
    )
    with instance.app_context():
        upgrade(directory=MIGRATIONS)
        assert db.engine.dialect.name == "sqlite"
    made = invoke_cli(
        instance,
        "users",
        "create-admin",
        "--username",
        "boss",
        "--email",
        "boss@example.com",
        "--password",
        PASSWORD,
    )
    assert made.exit_code == 0, made.output
    yield instance
    # The job queue is one per process and follows the app built last: back to the suite's Redis.
    configure_queue(app)


@pytest.fixture
def shop_client(shop: Flask):
    return shop.test_client()


@pytest.fixture
def boss_headers(shop_client) -> dict[str, str]:
    return bearer(login(shop_client, "boss")["access_token"])


@pytest.fixture
def category_id(shop_client, boss_headers) -> int:
    created = shop_client.post("/api/categories/", json={"name": "Stationery"}, headers=boss_headers)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


@pytest.fixture
def new_product(shop_client, boss_headers, category_id):
    def make(name: str, price: str, stock: int) -> int:
        body = {"name": name, "price": price, "stock_quantity": stock, "category_id": category_id}
        created = shop_client.post("/api/products/", json=body, headers=boss_headers)
        assert created.status_code == 201, created.get_json()
        return created.get_json()["id"]

    return make


@pytest.fixture
def customer(shop_client) -> dict[str, str]:
    """A customer who registered through the API; the headers of their login."""
    account = {"username": "buyer", "email": "buyer@example.com", "password": PASSWORD}
    registered = shop_client.post("/api/auth/register/", json=account)
    assert registered.status_code == 201, registered.get_json()
    return bearer(login(shop_client, "buyer")["access_token"])


def add_to_cart(client, headers: dict[str, str], product_id: int, quantity: int) -> None:
    added = client.post(
        "/api/cart/items/", json={"product_id": product_id, "quantity": quantity}, headers=headers
    )
    assert added.status_code in (200, 201), added.get_json()


def cart_lines(client, headers: dict[str, str]) -> list[tuple[int, int]]:
    cart = client.get("/api/cart/", headers=headers)
    assert cart.status_code == 200, cart.get_json()
    return sorted((item["product_id"], item["quantity"]) for item in cart.get_json()["items"])


def stock_shown(client, product_id: int) -> int:
    """The stock as clients see it: through the product detail, which the in-process cache keeps."""
    detail = client.get(f"/api/products/{product_id}/")
    assert detail.status_code == 200, detail.get_json()
    return detail.get_json()["stock_quantity"]


def stored(shop: Flask) -> dict:
    """What the SQLite file holds: orders, order lines, cart lines, each product's stock and the
    buyer's order count."""

    def count(model) -> int:
        return db.session.scalar(select(func.count()).select_from(model))

    with shop.app_context():
        return {
            "orders": count(Order),
            "order_items": count(OrderItem),
            "cart_items": count(CartItem),
            "stock": dict(db.session.execute(select(Product.id, Product.stock_quantity)).all()),
            "buyer_orders": db.session.scalar(select(User.orders_count).where(User.username == "buyer")),
        }


def test_adding_to_a_cart_answers_the_line_as_the_cart_shows_it(shop_client, customer, new_product):
    """On SQLite the add-to-cart takes its ORM path (the upsert, then the line loaded for the
    answer): a new line is 201, more of it 200, each answer the line as GET /api/cart/ shows it;
    an unknown product is 404 and adds nothing."""
    pen = new_product("Pen", "2.40", 50)
    first = shop_client.post("/api/cart/items/", json={"product_id": pen, "quantity": 2}, headers=customer)
    again = shop_client.post("/api/cart/items/", json={"product_id": pen, "quantity": 3}, headers=customer)
    assert (first.status_code, again.status_code) == (201, 200), (first.get_json(), again.get_json())
    line = shop_client.get("/api/cart/", headers=customer).get_json()["items"]
    assert line == [again.get_json()]
    assert again.get_json() == {
        "id": first.get_json()["id"],
        "product_id": pen,
        "quantity": 5,
        "unit_price": "2.40",
        "line_total": "12.00",
    }
    assert first.get_json()["line_total"] == "4.80"
    missing = shop_client.post(
        "/api/cart/items/", json={"product_id": pen + 1000, "quantity": 1}, headers=customer
    )
    assert_problem(missing, 404)
    assert cart_lines(shop_client, customer) == [(pen, 5)]
    # Past the line limit: SQLite's CHECK refuses it too (422), and the line stays as it was.
    over = shop_client.post("/api/cart/items/", json={"product_id": pen, "quantity": 9_996}, headers=customer)
    assert_problem(over, 422)
    assert over.get_json()["errors"] == {"quantity": ["A cart line holds at most 10000 units."]}
    assert cart_lines(shop_client, customer) == [(pen, 5)]


def test_a_cart_of_two_products_becomes_an_order(shop, shop_client, customer, new_product):
    pen = new_product("Pen", "19.99", 10)
    clip = new_product("Clip", "0.35", 5)
    # Read once, so the cached details must be purged by the checkout to show the new stock.
    assert (stock_shown(shop_client, pen), stock_shown(shop_client, clip)) == (10, 5)
    add_to_cart(shop_client, customer, pen, 2)
    add_to_cart(shop_client, customer, clip, 3)

    placed = shop_client.post("/api/orders/", json={"shipping_address": "1 Main Street"}, headers=customer)

    assert placed.status_code == 201, placed.get_json()
    order = placed.get_json()
    assert order["order_status"] == "pending" and order["shipping_address"] == "1 Main Street"
    assert sorted((item["product_id"], item["quantity"], item["price"]) for item in order["items"]) == [
        (pen, 2, "19.99"),
        (clip, 3, "0.35"),
    ]
    assert order["total_amount"] == "41.03"  # 2 x 19.99 + 3 x 0.35
    assert cart_lines(shop_client, customer) == []
    assert (stock_shown(shop_client, pen), stock_shown(shop_client, clip)) == (8, 2)

    detail = shop_client.get(f"/api/orders/{order['id']}/", headers=customer)
    assert detail.status_code == 200, detail.get_json()
    assert detail.get_json()["items"] == order["items"]
    assert [(e["from_status"], e["to_status"]) for e in detail.get_json()["events"]] == [(None, "pending")]
    assert stored(shop) == {
        "orders": 1,
        "order_items": 2,
        "cart_items": 0,
        "stock": {pen: 8, clip: 2},
        "buyer_orders": 1,
    }


def test_an_idempotency_key_replays_the_order(shop, shop_client, customer, new_product):
    pen = new_product("Pen", "19.99", 10)
    add_to_cart(shop_client, customer, pen, 2)
    keyed = {**customer, "Idempotency-Key": "sqlite-checkout-1"}

    first = shop_client.post("/api/orders/", json={}, headers=keyed)
    assert first.status_code == 201, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    # Something new in the cart: the replay must not check it out.
    add_to_cart(shop_client, customer, pen, 1)

    again = shop_client.post("/api/orders/", json={}, headers=keyed)

    assert again.status_code == 201, again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert cart_lines(shop_client, customer) == [(pen, 1)]
    assert stock_shown(shop_client, pen) == 8
    assert stored(shop) == {
        "orders": 1,
        "order_items": 1,
        "cart_items": 1,
        "stock": {pen: 8},
        "buyer_orders": 1,
    }


def test_insufficient_stock_is_refused_and_changes_nothing(shop, shop_client, customer, new_product):
    plenty = new_product("Pen", "19.99", 10)
    short = new_product("Clip", "0.35", 1)
    add_to_cart(shop_client, customer, plenty, 2)
    add_to_cart(shop_client, customer, short, 3)
    before = stored(shop)

    problem = assert_problem(shop_client.post("/api/orders/", json={}, headers=customer), 409)

    assert problem["products"] == [{"product_id": short, "name": "Clip", "requested": 3, "available": 1}]
    assert problem["detail"] == "Not enough stock for Clip (only 1 left, 3 in the cart)."
    # The step-by-step path had already emptied the cart and counted the order when it found the
    # shortage: all of it must be undone.
    assert cart_lines(shop_client, customer) == [(plenty, 2), (short, 3)]
    assert (stock_shown(shop_client, plenty), stock_shown(shop_client, short)) == (10, 1)
    assert (
        stored(shop)
        == before
        == {
            "orders": 0,
            "order_items": 0,
            "cart_items": 2,
            "stock": {plenty: 10, short: 1},
            "buyer_orders": 0,
        }
    )


def test_an_empty_cart_is_refused(shop, shop_client, customer, new_product):
    pen = new_product("Pen", "19.99", 10)
    assert_problem(shop_client.post("/api/orders/", json={}, headers=customer), 409)
    # A cart emptied after use too.
    add_to_cart(shop_client, customer, pen, 1)
    assert shop_client.delete("/api/cart/", headers=customer).status_code == 204

    assert_problem(shop_client.post("/api/orders/", json={}, headers=customer), 409)

    assert stored(shop) == {
        "orders": 0,
        "order_items": 0,
        "cart_items": 0,
        "stock": {pen: 10},
        "buyer_orders": 0,
    }


def test_shipping_is_part_of_the_order_and_an_unreachable_zone_sells_nothing(
    shop, shop_client, boss_headers, customer, new_product
):
    for code, warehouse in (("WH", True), ("CITY", False), ("ISLAND", False)):
        made = shop_client.post(
            "/api/shipping/zones/",
            json={"code": code, "name": code, "is_warehouse": warehouse},
            headers=boss_headers,
        )
        assert made.status_code == 201, made.get_json()
    leg = {"from_zone": "WH", "to_zone": "CITY", "cost": "4.90", "days": 2}
    assert shop_client.post("/api/shipping/legs/", json=leg, headers=boss_headers).status_code == 201
    lamp = new_product("Lamp", "10.00", 3)
    add_to_cart(shop_client, customer, lamp, 2)

    refused = shop_client.post(
        "/api/orders/", json={"shipping": {"to": "ISLAND", "method": "economy"}}, headers=customer
    )
    assert_problem(refused, 422)
    assert stored(shop)["orders"] == 0 and stored(shop)["stock"][lamp] == 3
    assert cart_lines(shop_client, customer) == [(lamp, 2)]

    placed = shop_client.post(
        "/api/orders/", json={"shipping": {"to": "CITY", "method": "express"}}, headers=customer
    )
    assert placed.status_code == 201, placed.get_json()
    order = placed.get_json()
    assert (order["shipping_method"], order["shipping_cost"], order["shipping_route"]) == (
        "express",
        "4.90",
        ["WH", "CITY"],
    )
    assert order["total_amount"] == "24.90"
    with shop.app_context():
        row = db.session.get(Order, order["id"])
        assert (row.total_amount, row.shipping_cost, row.shipping_route) == (
            Decimal("24.90"),
            Decimal("4.90"),
            ["WH", "CITY"],
        )
    assert stored(shop)["stock"][lamp] == 1
