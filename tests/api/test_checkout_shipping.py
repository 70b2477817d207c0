"""Checkout with shipping: the quote chosen at checkout becomes part of the order, in the same
transaction; an unreachable destination sells nothing; without a body the checkout is as before."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ecommerce.extensions import db
from ecommerce.orders.models import Order
from tests.factories import ProductFactory
from tests.helpers import assert_problem


@pytest.fixture
def network(client, admin_headers):
    """A warehouse W, a destination D by two lanes (cheap and slow through H, dear and fast
    direct), and an island zone that no leg reaches."""
    for code, warehouse in (("W", True), ("H", False), ("D", False), ("ISLAND", False)):
        made = client.post(
            "/api/shipping/zones/",
            json={"code": code, "name": f"Zone {code}", "is_warehouse": warehouse},
            headers=admin_headers,
        )
        assert made.status_code == 201, made.get_json()
    for origin, to, cost, days in (("W", "H", "3.00", 2), ("H", "D", "1.50", 3), ("W", "D", "9.90", 1)):
        made = client.post(
            "/api/shipping/legs/",
            json={"from_zone": origin, "to_zone": to, "cost": cost, "days": days},
            headers=admin_headers,
        )
        assert made.status_code == 201, made.get_json()


def fill_cart(client, headers, product, quantity):
    added = client.post(
        "/api/cart/items/", json={"product_id": product.id, "quantity": quantity}, headers=headers
    )
    assert added.status_code in (200, 201), added.get_json()


def stock(client, product) -> int:
    return client.get(f"/api/products/{product.id}/").get_json()["stock_quantity"]


@pytest.mark.parametrize(
    ("method", "cost", "route"), [("economy", "4.50", ["W", "H", "D"]), ("express", "9.90", ["W", "D"])]
)
def test_the_order_carries_its_shipping_and_the_total_includes_it(
    client, user_headers, network, method, cost, route
):
    lamp = ProductFactory(price=Decimal("20.00"), stock_quantity=5)
    fill_cart(client, user_headers, lamp, 2)
    body = {"shipping": {"to": "D", "method": method}, "shipping_address": "1 Harbour Road"}
    placed = client.post("/api/orders/", json=body, headers=user_headers)
    assert placed.status_code == 201, placed.get_json()
    order = placed.get_json()
    assert order["shipping_method"] == method and order["shipping_cost"] == cost
    assert order["shipping_route"] == route and order["shipping_address"] == "1 Harbour Road"
    assert Decimal(order["total_amount"]) == Decimal("40.00") + Decimal(cost)
    # As stored: the detail reads it back from the database.
    detail = client.get(f"/api/orders/{order['id']}/", headers=user_headers).get_json()
    assert {k: detail[k] for k in ("shipping_method", "shipping_cost", "shipping_route", "total_amount")} == {
        k: order[k] for k in ("shipping_method", "shipping_cost", "shipping_route", "total_amount")
    }
    assert stock(client, lamp) == 3


def test_the_quote_and_the_checkout_agree(client, user_headers, network):
    quote = client.get("/api/shipping/quote/", query_string={"to": "D"}).get_json()
    lamp = ProductFactory(price=Decimal("1.00"), stock_quantity=5)
    for option in quote["options"]:
        fill_cart(client, user_headers, lamp, 1)
        placed = client.post(
            "/api/orders/", json={"shipping": {"to": "D", "method": option["method"]}}, headers=user_headers
        ).get_json()
        assert (placed["shipping_cost"], placed["shipping_route"]) == (option["cost"], option["route"])


@pytest.mark.parametrize("to", ["ISLAND", "NOWHERE"], ids=["unreachable", "unknown"])
def test_an_unreachable_or_unknown_destination_is_422_and_sells_nothing(client, user_headers, network, to):
    lamp = ProductFactory(stock_quantity=5)
    fill_cart(client, user_headers, lamp, 2)
    refused = client.post(
        "/api/orders/", json={"shipping": {"to": to, "method": "economy"}}, headers=user_headers
    )
    problem = assert_problem(refused, 422)
    assert "shipping" in problem["errors"]
    assert stock(client, lamp) == 5
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0
    cart = client.get("/api/cart/", headers=user_headers).get_json()
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [(lamp.id, 2)]


@pytest.mark.parametrize(
    "shipping",
    [
        {"to": "D"},
        {"method": "economy"},
        {"to": "D", "method": "overnight"},
        {"to": "", "method": "economy"},
        "D",
    ],
    ids=["no-method", "no-to", "bad-method", "empty-to", "not-an-object"],
)
def test_a_malformed_shipping_choice_is_422(client, user_headers, network, shipping):
    lamp = ProductFactory(stock_quantity=5)
    fill_cart(client, user_headers, lamp, 1)
    refused = client.post("/api/orders/", json={"shipping": shipping}, headers=user_headers)
    assert "shipping" in assert_problem(refused, 422)["errors"]
    assert stock(client, lamp) == 5


def test_without_shipping_the_checkout_is_as_before(client, user_headers, network):
    lamp = ProductFactory(price=Decimal("2.50"), stock_quantity=5)
    fill_cart(client, user_headers, lamp, 2)
    order = client.post("/api/orders/", headers=user_headers).get_json()
    assert order["total_amount"] == "5.00" and order["shipping_cost"] == "0.00"
    assert order["shipping_method"] is None and order["shipping_route"] is None


def test_an_idempotency_key_replays_the_order_with_its_shipping(client, user_headers, network):
    lamp = ProductFactory(price=Decimal("2.00"), stock_quantity=5)
    fill_cart(client, user_headers, lamp, 1)
    body = {"shipping": {"to": "D", "method": "express"}}
    headers = {**user_headers, "Idempotency-Key": "ship-once"}
    first = client.post("/api/orders/", json=body, headers=headers)
    replay = client.post("/api/orders/", json=body, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json() == first.get_json()
    assert first.get_json()["total_amount"] == "11.90"
    other = client.post("/api/orders/", json={"shipping": {"to": "D", "method": "economy"}}, headers=headers)
    assert_problem(other, 422)  # the same key with another body
    assert db.session.scalar(select(func.count()).select_from(Order)) == 1
