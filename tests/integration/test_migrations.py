"""The real migrations: up and down on SQLite and PostgreSQL, the database-level constraints they
create on PostgreSQL, and no drift between them and the models."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic import command
from flask import Flask, current_app
from flask_migrate import downgrade, upgrade
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from ecommerce.config import TestingConfig
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.products.services import _text_match
from tests.helpers import drop_database, recreate_database

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "migrations")
TABLES = {
    "users",
    "categories",
    "products",
    "reviews",
    "shopping_carts",
    "cart_items",
    "wishlists",
    "wishlist_items",
    "orders",
    "order_items",
    "payments",
    "auth_sessions",
    "order_events",
    "idempotency_keys",
    "order_emails",
    "shipping_zones",
    "shipping_legs",
    "product_images",
}


def _tables() -> set[str]:
    return set(inspect(db.engine).get_table_names())


def _indexes(table: str) -> set[str]:
    return {index["name"] for index in inspect(db.engine).get_indexes(table)}


def _round_trip(instance: Flask) -> None:
    with instance.app_context():
        upgrade(directory=MIGRATIONS)
        assert TABLES <= _tables()
        assert _tables() - TABLES == {"alembic_version"}
        # The partial unique indexes exist on both backends.
        assert "uq_payments_order_id_active" in _indexes("payments")
        assert "uq_categories_root_name" in _indexes("categories")

        downgrade(directory=MIGRATIONS, revision="base")
        assert _tables() & TABLES == set()

        upgrade(directory=MIGRATIONS)
        assert TABLES <= _tables()
        db.session.remove()


def test_sqlite_upgrade_downgrade_upgrade(make_instance, tmp_path):
    instance = make_instance(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'migrations.db'}")
    _round_trip(instance)
    with instance.app_context():
        # The full-text GIN index is PostgreSQL's only.
        assert "ix_products_search" not in _indexes("products")


@pytest.fixture
def scratch_postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database next to the test database (``<test db>_migrations``)."""
    url = make_url(TestingConfig.SQLALCHEMY_DATABASE_URI)
    scratch = url.set(database=f"{url.database}_migrations")
    recreate_database(scratch.render_as_string(hide_password=False))
    yield scratch.render_as_string(hide_password=False)
    drop_database(scratch.render_as_string(hide_password=False))


def test_postgresql_upgrade_downgrade_upgrade(make_instance, scratch_postgres_url):
    instance = make_instance(SQLALCHEMY_DATABASE_URI=scratch_postgres_url)
    _round_trip(instance)
    with instance.app_context():
        assert "ix_products_search" in _indexes("products")
        db.session.remove()
        db.engine.dispose()  # before the scratch database is dropped


def _order_lines_take_their_order_time(instance: Flask) -> None:
    """0007 gives the lines of orders placed before it their order's time, not the migration's."""
    with instance.app_context():
        upgrade(directory=MIGRATIONS, revision="0006_shipping_network")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, username, email, password_hash, created_at, updated_at) "
                    "VALUES (1, 'old', 'old@example.com', 'x', :t, :t)"
                ),
                {"t": "2024-03-01 10:00:00+00:00"},
            )
            connection.execute(
                text(
                    "INSERT INTO orders (id, user_id, total_amount, created_at, updated_at) "
                    "VALUES (7, 1, 2.00, :t, :t)"
                ),
                {"t": "2024-03-01 10:00:00+00:00"},
            )
            connection.execute(
                text(
                    "INSERT INTO order_items (order_id, product_name, quantity, price) "
                    "VALUES (7, 'Kettle', 2, 1.00)"
                )
            )
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            created, updated = connection.execute(
                text("SELECT created_at, updated_at FROM order_items WHERE order_id = 7")
            ).one()
        assert str(created).startswith("2024-03-01 10:00:00"), created
        assert str(updated).startswith("2024-03-01 10:00:00"), updated
        columns = {c["name"]: c for c in inspect(db.engine).get_columns("order_items")}
        assert not columns["created_at"]["nullable"] and not columns["updated_at"]["nullable"]
        db.session.remove()
        db.engine.dispose()


def test_order_line_timestamps_backfilled_on_sqlite(make_instance, tmp_path):
    _order_lines_take_their_order_time(
        make_instance(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'lines.db'}")
    )


def test_order_line_timestamps_backfilled_on_postgresql(make_instance, scratch_postgres_url):
    _order_lines_take_their_order_time(make_instance(SQLALCHEMY_DATABASE_URI=scratch_postgres_url))


def test_no_drift_between_models_and_migrated_postgresql(app_context):
    """Autogenerate against the migrated session database proposes nothing."""
    assert db.engine.dialect.name == "postgresql"
    config = current_app.extensions["migrate"].migrate.get_config(MIGRATIONS)
    command.check(config)  # raises AutogenerateDiffsDetected, listing the drift


def test_full_text_gin_index_exists_and_is_used(app_context):
    indexdef = db.session.scalar(
        text(
            "SELECT indexdef FROM pg_indexes "
            "WHERE tablename = 'products' AND indexname = 'ix_products_search'"
        )
    )
    assert indexdef is not None
    assert "USING gin" in indexdef and "to_tsvector" in indexdef
    # The API's search expression is the indexed one, so the planner can use the index.
    statement = select(Product.id).where(_text_match("kettle"))
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(connection.scalars(text("EXPLAIN " + sql)))
        connection.rollback()
    assert "ix_products_search" in plan, plan
    db.session.remove()


# -- constraints held by PostgreSQL itself --------------------------------------------------


@pytest.fixture
def pg(app_context) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back, with one of everything in it."""
    with db.engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


def _insert(connection: Connection, sql: str, **params) -> int:
    return connection.execute(text(sql + " RETURNING id"), params).scalar_one()


@pytest.fixture
def rows(pg: Connection) -> dict[str, int]:
    users = [
        _insert(
            pg,
            "INSERT INTO users (username, email, password_hash) VALUES (:name, :name || '@example.com', 'x')",
            name=name,
        )
        for name in ("constraint_a", "constraint_b")
    ]
    category = _insert(pg, "INSERT INTO categories (name) VALUES ('Constraint Root')")
    product = _insert(
        pg,
        "INSERT INTO products (name, price, stock_quantity, category_id) VALUES ('P', 1.00, 1, :category)",
        category=category,
    )
    cart = _insert(pg, "INSERT INTO shopping_carts (user_id) VALUES (:user)", user=users[0])
    order = _insert(pg, "INSERT INTO orders (user_id, total_amount) VALUES (:user, 1.00)", user=users[0])
    _insert(
        pg,
        "INSERT INTO reviews (product_id, user_id, rating) VALUES (:product, :user, 5)",
        product=product,
        user=users[0],
    )
    _insert(
        pg,
        "INSERT INTO payments (order_id, payment_method, amount, idempotency_key) "
        "VALUES (:order, 'card', 1.00, 'k1')",
        order=order,
    )
    return {
        "user": users[0],
        "other_user": users[1],
        "category": category,
        "product": product,
        "cart": cart,
        "order": order,
    }


VIOLATIONS = {
    "negative price": (
        "INSERT INTO products (name, price, category_id) VALUES ('Bad', -0.01, :category)",
        "ck_products_price_non_negative",
    ),
    "negative stock": (
        "INSERT INTO products (name, price, stock_quantity, category_id) VALUES ('Bad', 1, -1, :category)",
        "ck_products_stock_non_negative",
    ),
    "stock decremented below zero": (
        "UPDATE products SET stock_quantity = stock_quantity - 2 WHERE id = :product",
        "ck_products_stock_non_negative",
    ),
    "review rating 6": (
        "INSERT INTO reviews (product_id, user_id, rating) VALUES (:product, :other_user, 6)",
        "ck_reviews_rating_range",
    ),
    "review rating 0": (
        "INSERT INTO reviews (product_id, user_id, rating) VALUES (:product, :other_user, 0)",
        "ck_reviews_rating_range",
    ),
    "second review of a product by one user": (
        "INSERT INTO reviews (product_id, user_id, rating) VALUES (:product, :user, 3)",
        "uq_reviews_user_id_product_id",
    ),
    "second cart for one user": (
        "INSERT INTO shopping_carts (user_id) VALUES (:user)",
        "uq_shopping_carts_user_id",
    ),
    "cart item with quantity 0": (
        "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (:cart, :product, 0)",
        "ck_cart_items_quantity_positive",
    ),
    "cart item with quantity 10001": (
        "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (:cart, :product, 10001)",
        "ck_cart_items_quantity_at_most_10000",
    ),
    "second pending payment for one order": (
        "INSERT INTO payments (order_id, payment_method, amount, idempotency_key) "
        "VALUES (:order, 'paypal', 1.00, 'k2')",
        "uq_payments_order_id_active",
    ),
    "negative order total": (
        "INSERT INTO orders (user_id, total_amount) VALUES (:user, -1)",
        "ck_orders_total_non_negative",
    ),
    "duplicate top-level category name": (
        "INSERT INTO categories (name) VALUES ('Constraint Root')",
        "uq_categories_root_name",
    ),
    "duplicate shipping zone code": (
        "INSERT INTO shipping_zones (code, name) VALUES ('CK-A', 'A'), ('CK-A', 'A again')",
        "uq_shipping_zones_code",
    ),
    "shipping leg of 0 days": (
        "INSERT INTO shipping_zones (code, name) VALUES ('CK-A', 'A'), ('CK-B', 'B'); "
        "INSERT INTO shipping_legs (from_zone_id, to_zone_id, cost, days) "
        "SELECT a.id, b.id, 1.00, 0 FROM shipping_zones a, shipping_zones b "
        "WHERE a.code = 'CK-A' AND b.code = 'CK-B'",
        "ck_shipping_legs_days_positive",
    ),
    "shipping leg from a zone to itself": (
        "INSERT INTO shipping_zones (code, name) VALUES ('CK-A', 'A'); "
        "INSERT INTO shipping_legs (from_zone_id, to_zone_id, cost, days) "
        "SELECT id, id, 1.00, 1 FROM shipping_zones WHERE code = 'CK-A'",
        "ck_shipping_legs_not_a_loop",
    ),
    "shipping zone deleted while a leg uses it": (
        "INSERT INTO shipping_zones (code, name) VALUES ('CK-A', 'A'), ('CK-B', 'B'); "
        "INSERT INTO shipping_legs (from_zone_id, to_zone_id, cost, days) "
        "SELECT a.id, b.id, -1.00, 1 FROM shipping_zones a, shipping_zones b "
        "WHERE a.code = 'CK-A' AND b.code = 'CK-B'; "
        "DELETE FROM shipping_zones WHERE code = 'CK-B'",
        "fk_shipping_legs_to_zone_id_shipping_zones",
    ),
    "duplicate category name under one parent": (
        "INSERT INTO categories (name, parent_id) VALUES ('Constraint Root', :category); "
        "INSERT INTO categories (name, parent_id) VALUES ('Constraint Root', :category)",
        "uq_categories_parent_id_name",
    ),
}


@pytest.mark.parametrize("case", VIOLATIONS)
def test_database_refuses(pg, rows, case):
    sql, constraint = VIOLATIONS[case]
    savepoint = pg.begin_nested()
    with pytest.raises(IntegrityError) as raised:
        pg.execute(text(sql), rows)
    savepoint.rollback()
    assert raised.value.orig.diag.constraint_name == constraint


def test_a_new_payment_is_allowed_once_the_last_one_failed(pg, rows):
    pg.execute(text("UPDATE payments SET status = 'failed' WHERE order_id = :order"), rows)
    pg.execute(
        text(
            "INSERT INTO payments (order_id, payment_method, amount, idempotency_key) "
            "VALUES (:order, 'card', 1.00, 'k3')"
        ),
        rows,
    )
    pg.execute(text("UPDATE payments SET status = 'succeeded' WHERE idempotency_key = 'k3'"))
    savepoint = pg.begin_nested()
    with pytest.raises(IntegrityError) as raised:  # succeeded also blocks a new one
        pg.execute(
            text(
                "INSERT INTO payments (order_id, payment_method, amount, idempotency_key) "
                "VALUES (:order, 'card', 1.00, 'k4')"
            ),
            rows,
        )
    savepoint.rollback()
    assert raised.value.orig.diag.constraint_name == "uq_payments_order_id_active"
