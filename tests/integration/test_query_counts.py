"""SQL statements per request for the order history, one order and an uncached product:
constant, never N+1.

Every statement the app's engine sends is counted with SQLAlchemy's ``before_cursor_execute``
event (observation only), for one GET of a page of orders and one GET of an order, on
committed data: a customer with 2 orders and one with 20 (two lines each, payments and status
events on each), an order with one line, payment and event and one with many. The counts must
be the same for both, and are the numbers docs/orders_bottleneck.md quotes.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask

from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderEvent, OrderItem, OrderStatus
from ecommerce.payments.models import Payment, PaymentMethod, PaymentStatus
from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, capture_statements, login

# One GET /api/orders/: the login check (user joined to its auth session, which also reads the
# total kept on the user row) and the page of orders with their lines (one joined statement).
LIST_QUERIES = 2
# One GET /api/orders/<id>/: the login check, the order, its lines, payments and events.
DETAIL_QUERIES = 5


def _orders(user_id: int, products: list, count: int, lines: int, payments: int, events: int) -> list[int]:
    """``count`` committed orders of the user, each with ``lines`` lines, ``payments`` payments
    (the last one succeeded, the others failed) and ``events`` status events."""
    ids = []
    for number in range(count):
        order = Order(
            user_id=user_id,
            order_status=OrderStatus.PAID,
            total_amount=Decimal("10.00") * lines,
            shipping_address="1 Main Street",
            items=[
                OrderItem(
                    product_id=products[line % len(products)].id,
                    product_name=f"Line {line}",
                    quantity=line + 1,
                    price=Decimal("10.00"),
                )
                for line in range(lines)
            ],
        )
        db.session.add(order)
        db.session.flush()
        for attempt in range(payments):
            db.session.add(
                Payment(
                    order_id=order.id,
                    payment_method=PaymentMethod.CARD,
                    amount=order.total_amount,
                    status=PaymentStatus.SUCCEEDED if attempt == payments - 1 else PaymentStatus.FAILED,
                    idempotency_key=f"qc-{user_id}-{number}-{attempt}",
                )
            )
        for step in range(events):
            db.session.add(
                OrderEvent(order_id=order.id, to_status=OrderStatus.PAID, actor_id=user_id, note=f"e{step}")
            )
        ids.append(order.id)
    db.session.commit()
    return ids


@pytest.fixture
def customers(app: Flask, committed: None) -> dict[str, dict]:
    """Two customers: ``few`` with 2 small orders, ``many`` with 20 larger ones."""
    with app.app_context():
        products = [ProductFactory(stock_quantity=100) for _ in range(3)]
        few, many = UserFactory(orders_count=2), UserFactory(orders_count=20)
        found = {
            "few": {"user": few.username, "orders": _orders(few.id, products, 2, 1, 1, 1)},
            "many": {"user": many.username, "orders": _orders(many.id, products, 20, 2, 2, 3)},
        }
        db.session.remove()
    client = app.test_client()
    for customer in found.values():
        customer["headers"] = bearer(login(client, customer["user"])["access_token"])
    return found


def _count(app: Flask, path: str, headers: dict[str, str]) -> tuple[list | dict, list[str]]:
    client = app.test_client()
    with capture_statements(app) as sent:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json(), sent


def test_order_history_page_is_a_constant_number_of_queries(app: Flask, customers: dict) -> None:
    few, few_sent = _count(app, "/api/orders/?page_size=20", customers["few"]["headers"])
    many, many_sent = _count(app, "/api/orders/?page_size=20", customers["many"]["headers"])

    assert (len(few), len(many)) == (2, 20)
    assert all(len(order["items"]) == 2 for order in many)
    assert len(few_sent) == len(many_sent) == LIST_QUERIES, many_sent


def test_one_order_is_a_constant_number_of_queries(app: Flask, customers: dict) -> None:
    small, small_sent = _count(
        app, f"/api/orders/{customers['few']['orders'][0]}/", customers["few"]["headers"]
    )
    large, large_sent = _count(
        app, f"/api/orders/{customers['many']['orders'][0]}/", customers["many"]["headers"]
    )

    assert (len(small["items"]), len(small["payments"]), len(small["events"])) == (1, 1, 1)
    assert (len(large["items"]), len(large["payments"]), len(large["events"])) == (2, 2, 3)
    assert len(small_sent) == len(large_sent) == DETAIL_QUERIES, large_sent


def test_an_uncached_product_is_one_statement_with_its_pictures_in_order(app: Flask, committed) -> None:
    """A cache miss of GET /api/products/<id>/ reads the product and its pictures in one joined
    statement, whether it has none or several; the pictures come in their order."""
    from ecommerce.products.models import ProductImage

    with app.app_context():
        bare = ProductFactory().id
        pictured = ProductFactory()
        for position in (1, 0, 2):
            db.session.add(
                ProductImage(
                    product_id=pictured.id,
                    position=position,
                    file_name=f"{position}.jpg",
                    width=10,
                    height=10,
                    thumbnail_name=f"{position}-t.jpg",
                    thumbnail_width=5,
                    thumbnail_height=5,
                )
            )
        db.session.commit()
        pictured_id = pictured.id
    seen = []
    for product_id in (bare, pictured_id):
        body, sent = _count(app, f"/api/products/{product_id}/", {})
        seen.append(body)
        assert [statement for statement in sent if "products" in statement] == sent
        assert len(sent) == 1, sent
    assert seen[0]["images"] == [] and seen[0]["id"] == bare
    assert [image["position"] for image in seen[1]["images"]] == [0, 1, 2]
    assert seen[1]["images"][0]["url"].endswith("0.jpg")


def test_adding_to_a_cart_is_the_login_check_and_one_statement(app: Flask, committed) -> None:
    """POST /api/cart/items/ to an existing cart: the login check and the upsert, which also
    returns the product's price (no reload of the line); the answer is the line as GET
    /api/cart/ shows it, for a new line (201) and for more of one already there (200)."""
    with app.app_context():
        first, second = ProductFactory(price=Decimal("12.50")), ProductFactory(price=Decimal("3.10"))
        user = UserFactory()
        ids, username = (first.id, second.id), user.username
        db.session.remove()
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    assert (
        client.post(
            "/api/cart/items/", json={"product_id": ids[0], "quantity": 1}, headers=headers
        ).status_code
        == 201
    )

    answers = []
    for product_id, quantity, status in ((ids[1], 2, 201), (ids[1], 3, 200)):
        with capture_statements(app) as sent:
            response = client.post(
                "/api/cart/items/", json={"product_id": product_id, "quantity": quantity}, headers=headers
            )
        assert response.status_code == status, response.get_json()
        assert len(sent) == 2, sent
        assert "INSERT INTO cart_items" in sent[1] and "price" in sent[1], sent[1]
        answers.append(response.get_json())
    cart = client.get("/api/cart/", headers=headers).get_json()
    line = next(item for item in cart["items"] if item["product_id"] == ids[1])
    assert (
        answers[1]
        == line
        == {
            "id": answers[0]["id"],
            "product_id": ids[1],
            "quantity": 5,
            "unit_price": "3.10",
            "line_total": "15.50",
        }
    )
    assert answers[0]["quantity"] == 2 and answers[0]["line_total"] == "6.20"
