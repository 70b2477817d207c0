"""``flask seed --load-customers / --load-orders / --csv-dir``: the JMeter plans' data, on
PostgreSQL and on SQLite, checked through the database, the API and the CSV files."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from ecommerce.core.models import utcnow
from ecommerce.extensions import db
from ecommerce.orders.models import ORDER_TRANSITIONS, OrderStatus
from tests.factories import UserFactory
from tests.helpers import bearer, invoke_cli, login

PASSWORD = "loadtest-password"
MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "migrations")

# Orders whose total is not the sum of their lines, or that have no line, or more than 3.
BAD_TOTALS = """
SELECT o.id FROM orders o
LEFT JOIN (SELECT order_id, SUM(price * quantity) AS total, COUNT(*) AS n
           FROM order_items GROUP BY order_id) i ON i.order_id = o.id
WHERE i.n IS NULL OR i.n > 3 OR ROUND(o.total_amount, 2) <> ROUND(i.total, 2)
"""
# Users whose orders_count is not the number of their orders.
COUNT_DRIFT = """
SELECT u.username FROM users u
WHERE u.orders_count <> (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id)
"""
# Lines not at their product's current price and name.
LINE_DRIFT = """
SELECT i.id FROM order_items i JOIN products p ON p.id = i.product_id
WHERE i.price <> p.price OR i.product_name <> p.name
"""


def rows(app: Flask, sql: str) -> list:
    with app.app_context():
        result = db.session.execute(text(sql)).all()
        db.session.remove()
        return [tuple(row) for row in result]


def scalar(app: Flask, sql: str):
    return rows(app, sql)[0][0]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def orders_per_load_customer(app: Flask) -> dict[str, int]:
    return dict(
        rows(
            app,
            "SELECT u.username, COUNT(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id "
            "WHERE u.email LIKE '%@load.example' GROUP BY u.username",
        )
    )


def api_order_total(client, username: str, password: str = PASSWORD) -> tuple[int, list[dict]]:
    headers = bearer(login(client, username, password)["access_token"])
    response = client.get("/api/orders/?page_size=100", headers=headers)
    assert response.status_code == 200, response.get_json()
    return json.loads(response.headers["X-Pagination"])["total"], response.get_json()


def assert_histories_are_consistent(app: Flask) -> None:
    """Totals, lines, orders_count and each order's status history (a legal walk from
    ``pending`` to its status, within the past year)."""
    assert rows(app, BAD_TOTALS) == []
    assert rows(app, COUNT_DRIFT) == []
    assert rows(app, LINE_DRIFT) == []
    statuses = dict(rows(app, "SELECT id, order_status FROM orders"))
    assert set(statuses.values()) <= set(OrderStatus.values())
    history = defaultdict(list)
    for order_id, from_status, to_status in rows(
        app, "SELECT order_id, from_status, to_status FROM order_events ORDER BY order_id, created_at, id"
    ):
        history[order_id].append((from_status, to_status))
    assert set(history) == set(statuses)
    for order_id, steps in history.items():
        assert steps[0] == (None, OrderStatus.PENDING.value)
        for (_, before), (after_from, after) in zip(steps, steps[1:], strict=False):
            assert after_from == before and OrderStatus(after) in ORDER_TRANSITIONS[OrderStatus(before)]
        assert steps[-1][1] == statuses[order_id]
    with app.app_context():
        oldest, newest = db.session.execute(text("SELECT MIN(created_at), MAX(updated_at) FROM orders")).one()
        db.session.remove()
    now = utcnow().replace(tzinfo=None)
    if isinstance(oldest, str):  # SQLite hands back text
        oldest, newest = datetime.fromisoformat(oldest), datetime.fromisoformat(newest)
    oldest, newest = oldest.replace(tzinfo=None), newest.replace(tzinfo=None)
    assert now - timedelta(days=366) < oldest and newest <= now


def test_load_data_customers_orders_and_csvs(app, empty_database, tmp_path):
    plain = invoke_cli(app, "seed", "--products", "80", "--customers", "1")
    assert plain.exit_code == 0, plain.output
    # Without the new options, seed says and does what it always did.
    assert plain.output.splitlines()[-1].startswith("Seeded: ")
    assert "Load" not in plain.output and "Wrote" not in plain.output
    stock = rows(app, "SELECT id, stock_quantity FROM products ORDER BY id")
    # Someone else's account that merely looks like a load customer is left alone.
    with app.app_context():
        UserFactory(username="load_customer_77777", email="lookalike@example.com")

    csv_dir = tmp_path / "csv"
    args = ("seed", "--products", "80", "--customers", "1", "--load-customers", "4", "--load-orders", "6")
    result = invoke_cli(app, *args, "--csv-dir", str(csv_dir))
    assert result.exit_code == 0, result.output
    assert "Load customers: 4 (4 new)" in result.output
    assert "Load orders: 24 new, 6 per load customer" in result.output
    in_stock = [product_id for product_id, quantity in stock if quantity > 0]
    categories = scalar(app, "SELECT COUNT(*) FROM categories")
    for name, count in (("users.csv", 4), ("products.csv", len(in_stock)), ("categories.csv", categories)):
        assert f"Wrote {csv_dir / name} ({count} rows)" in result.output

    # The customers: active, role customer, one shared hash (hashed once), logging in by API.
    accounts = rows(
        app,
        "SELECT username, email, role, is_active FROM users "
        "WHERE email LIKE '%@load.example' ORDER BY username",
    )
    usernames = [f"load_customer_{n:05d}" for n in range(1, 5)]
    assert accounts == [(name, f"{name}@load.example", "customer", True) for name in usernames]
    assert (
        scalar(app, "SELECT COUNT(DISTINCT password_hash) FROM users WHERE email LIKE '%@load.example'") == 1
    )
    client = app.test_client()
    for name in usernames:
        total, orders = api_order_total(client, name)
        assert total == 6 == len(orders)
        for order in orders:
            assert Decimal(order["total_amount"]) == sum(
                Decimal(item["price"]) * item["quantity"] for item in order["items"]
            )
    # By email too, as the login contract allows.
    login(client, "load_customer_00001@load.example", PASSWORD)

    assert orders_per_load_customer(app) == dict.fromkeys(usernames, 6)
    assert_histories_are_consistent(app)
    # A history, not sales: stock is untouched.
    assert rows(app, "SELECT id, stock_quantity FROM products ORDER BY id") == stock
    mix = dict(rows(app, "SELECT order_status, COUNT(*) FROM orders GROUP BY order_status"))
    assert mix.get("delivered", 0) + mix.get("paid", 0) > 24 / 2

    # The CSV files: headers, rows, in-stock products in a shuffled but repeatable order.
    users_csv = read_csv(csv_dir / "users.csv")
    assert users_csv == [["username", "password"]] + [[name, PASSWORD] for name in usernames]
    products_csv = read_csv(csv_dir / "products.csv")
    assert products_csv[0] == ["product_id"]
    product_ids = [int(row[0]) for row in products_csv[1:]]
    assert sorted(product_ids) == in_stock and product_ids != in_stock
    categories_csv = read_csv(csv_dir / "categories.csv")
    assert categories_csv[0] == ["category_id"]
    assert [int(row[0]) for row in categories_csv[1:]] == [
        row[0] for row in rows(app, "SELECT id FROM categories ORDER BY id")
    ]
    first_products_csv = (csv_dir / "products.csv").read_text()

    # Again: nothing new, and the same files.
    again = invoke_cli(app, *args, "--csv-dir", str(csv_dir))
    assert again.exit_code == 0, again.output
    assert "Load customers: 4 (0 new)" in again.output and "Load orders: 0 new" in again.output
    assert scalar(app, "SELECT COUNT(*) FROM orders") == 24
    assert (csv_dir / "products.csv").read_text() == first_products_csv

    # A customer orders through the API meanwhile: the top-up counts that order too.
    headers = bearer(login(client, usernames[0], PASSWORD)["access_token"])
    added = client.post("/api/cart/items/", json={"product_id": in_stock[0], "quantity": 1}, headers=headers)
    assert added.status_code == 201, added.get_json()
    placed = client.post("/api/orders/", json={}, headers=headers)
    assert placed.status_code == 201, placed.get_json()

    more = invoke_cli(
        app, "seed", "--products", "80", "--customers", "1", "--load-customers", "6", "--load-orders", "8"
    )
    assert more.exit_code == 0, more.output
    assert "Load customers: 6 (2 new)" in more.output
    # 1 more for the customer who ordered, 2 for the other old ones, 8 for each new one.
    assert f"Load orders: {1 + 3 * 2 + 2 * 8} new" in more.output
    assert orders_per_load_customer(app) == {
        **{name: 8 for name in usernames},
        "load_customer_00005": 8,
        "load_customer_00006": 8,
    }
    assert_histories_are_consistent(app)
    assert api_order_total(client, "load_customer_00006")[0] == 8
    assert api_order_total(client, usernames[0])[0] == 8

    # Another --load-password: every load customer now logs in with it (users.csv stays true).
    changed = invoke_cli(
        app, "seed", "--products", "80", "--customers", "1", "--load-password", "another-password"
    )
    assert changed.exit_code == 0, changed.output
    refused = client.post("/api/auth/login/", json={"username": usernames[1], "password": PASSWORD})
    assert refused.status_code == 401
    assert api_order_total(client, usernames[1], "another-password")[0] == 8
    assert scalar(app, "SELECT COUNT(*) FROM orders") == 6 * 8
    assert scalar(app, "SELECT orders_count FROM users WHERE username = 'load_customer_77777'") == 0
    login(client, "load_customer_77777", "password123")


def test_load_options_are_checked(app, empty_database, tmp_path):
    short = invoke_cli(app, "seed", "--products", "5", "--load-customers", "1", "--load-password", "short")
    assert short.exit_code != 0 and "--load-password" in short.output
    negative = invoke_cli(app, "seed", "--products", "5", "--load-orders", "-1")
    assert negative.exit_code == 2
    assert scalar(app, "SELECT COUNT(*) FROM products") == 0

    # Orders need products to reference.
    no_products = invoke_cli(app, "seed", "--products", "0", "--load-customers", "2", "--load-orders", "3")
    assert no_products.exit_code != 0
    assert "no products" in no_products.output
    assert scalar(app, "SELECT COUNT(*) FROM orders") == 0


def test_load_data_on_sqlite(build_app, tmp_path):
    """The embedded database: the same options, the same guarantees."""
    sqlite_app = build_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'load.db'}")
    with sqlite_app.app_context():
        upgrade(directory=MIGRATIONS)
    csv_dir = tmp_path / "csv"
    args = ("seed", "--products", "40", "--customers", "0", "--load-customers", "3", "--load-orders", "5")
    result = invoke_cli(sqlite_app, *args, "--csv-dir", str(csv_dir))
    assert result.exit_code == 0, result.output
    assert "Load customers: 3 (3 new)" in result.output and "Load orders: 15 new" in result.output

    assert_histories_are_consistent(sqlite_app)
    client = sqlite_app.test_client()
    assert api_order_total(client, "load_customer_00003")[0] == 5
    assert read_csv(csv_dir / "users.csv")[1:] == [[f"load_customer_0000{n}", PASSWORD] for n in (1, 2, 3)]
    assert read_csv(csv_dir / "products.csv")[0] == ["product_id"]
    assert len(read_csv(csv_dir / "categories.csv")) > 1

    again = invoke_cli(
        sqlite_app,
        "seed",
        "--products",
        "40",
        "--customers",
        "0",
        "--load-customers",
        "4",
        "--load-orders",
        "5",
    )
    assert again.exit_code == 0, again.output
    assert "Load customers: 4 (1 new)" in again.output and "Load orders: 5 new" in again.output
    assert orders_per_load_customer(sqlite_app) == {f"load_customer_0000{n}": 5 for n in (1, 2, 3, 4)}
    assert_histories_are_consistent(sqlite_app)
