"""Cart: made on first use, one line per product, current prices, money as exact strings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import ProductFactory
from tests.helpers import assert_problem, new_customer

CART_FIELDS = {"id", "items", "total_amount"}
LINE_FIELDS = {"id", "product_id", "quantity", "unit_price", "line_total"}


def _cart(client, headers):
    response = client.get("/api/cart/", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _add(client, headers, product_id, quantity=1):
    return client.post(
        "/api/cart/items/", json={"product_id": product_id, "quantity": quantity}, headers=headers
    )


def _assert_money(value: str) -> Decimal:
    """A JSON string with exactly two decimals, returned as a Decimal."""
    assert isinstance(value, str), value
    whole, _, cents = value.partition(".")
    assert whole.lstrip("-").isdigit() and len(cents) == 2 and cents.isdigit(), value
    return Decimal(value)


def test_anonymous_is_401(client):
    product = ProductFactory()
    assert_problem(client.get("/api/cart/"), 401)
    assert_problem(client.delete("/api/cart/"), 401)
    assert_problem(client.post("/api/cart/items/", json={"product_id": product.id, "quantity": 1}), 401)
    assert_problem(client.patch("/api/cart/items/1/", json={"quantity": 1}), 401)
    assert_problem(client.delete("/api/cart/items/1/"), 401)


def test_cart_is_made_on_first_use(client, user_headers):
    cart = _cart(client, user_headers)
    assert set(cart) == CART_FIELDS
    assert isinstance(cart["id"], int)
    assert cart["items"] == [] and cart["total_amount"] == "0.00"
    # The same cart every time, with or without the final slash (no redirect).
    assert _cart(client, user_headers) == cart
    same = client.get("/api/cart", headers=user_headers)
    assert same.status_code == 200 and same.get_json() == cart


def test_each_user_has_their_own_cart(client, user_headers):
    _, other_headers = new_customer(client)
    product = ProductFactory()
    assert _add(client, user_headers, product.id).status_code == 201
    mine, theirs = _cart(client, user_headers), _cart(client, other_headers)
    assert mine["id"] != theirs["id"]
    assert len(mine["items"]) == 1 and theirs["items"] == []


def test_cart_lifecycle(client, user_headers):
    pen = ProductFactory(price=Decimal("19.99"), stock_quantity=50)
    clip = ProductFactory(price=Decimal("0.10"), stock_quantity=50)

    added = _add(client, user_headers, pen.id, 2)
    assert added.status_code == 201, added.get_json()
    line = added.get_json()
    assert set(line) == LINE_FIELDS
    assert line["product_id"] == pen.id and line["quantity"] == 2
    assert line["unit_price"] == "19.99" and line["line_total"] == "39.98"

    # The same product again adds to the existing line.
    again = _add(client, user_headers, pen.id, 1)
    assert again.status_code == 200, again.get_json()
    assert again.get_json() == {**line, "quantity": 3, "line_total": "59.97"}

    clip_line = _add(client, user_headers, clip.id, 3)
    assert clip_line.status_code == 201
    assert clip_line.get_json()["line_total"] == "0.30"  # 3 * 0.1 is 0.30000000000000004 in floats

    cart = _cart(client, user_headers)
    assert [item["product_id"] for item in cart["items"]] == [pen.id, clip.id]
    assert all(set(item) == LINE_FIELDS for item in cart["items"])
    for item in cart["items"]:
        assert _assert_money(item["line_total"]) == _assert_money(item["unit_price"]) * item["quantity"]
    assert cart["total_amount"] == "60.27"
    assert _assert_money(cart["total_amount"]) == sum(
        (Decimal(item["line_total"]) for item in cart["items"]), Decimal("0")
    )

    # Set a line's quantity.
    patched = client.patch(f"/api/cart/items/{line['id']}/", json={"quantity": 7}, headers=user_headers)
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json() == {**line, "quantity": 7, "line_total": "139.93"}
    assert _cart(client, user_headers)["total_amount"] == "140.23"

    # Remove a line.
    removed = client.delete(f"/api/cart/items/{clip_line.get_json()['id']}/", headers=user_headers)
    assert removed.status_code == 204 and removed.data == b""
    cart = _cart(client, user_headers)
    assert [item["id"] for item in cart["items"]] == [line["id"]]
    assert cart["total_amount"] == "139.93"
    assert_problem(client.delete(f"/api/cart/items/{clip_line.get_json()['id']}/", headers=user_headers), 404)

    # Empty the cart.
    emptied = client.delete("/api/cart/", headers=user_headers)
    assert emptied.status_code == 204
    assert _cart(client, user_headers) == {"id": cart["id"], "items": [], "total_amount": "0.00"}
    # Emptying an empty cart is fine too.
    assert client.delete("/api/cart/", headers=user_headers).status_code == 204


def test_cart_shows_the_current_price(client, user_headers, admin_headers):
    product = ProductFactory(price=Decimal("10.00"))
    line = _add(client, user_headers, product.id, 3).get_json()
    assert line["unit_price"] == "10.00" and line["line_total"] == "30.00"

    changed = client.patch(f"/api/products/{product.id}/", json={"price": "12.35"}, headers=admin_headers)
    assert changed.status_code == 200, changed.get_json()

    cart = _cart(client, user_headers)
    assert cart["items"][0]["unit_price"] == "12.35"
    assert cart["items"][0]["line_total"] == "37.05"
    assert cart["total_amount"] == "37.05"


def test_unknown_product_is_404(client, user_headers):
    assert_problem(_add(client, user_headers, 987654), 404)
    assert _cart(client, user_headers)["items"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"quantity": 10001}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"quantity": None}, "quantity"),
        ({"product_id": None}, "product_id"),
        ({"product_id": "1"}, "product_id"),
        ({"product_id": 0}, "product_id"),
        ({"product_id": "absent"}, "product_id"),
        ({"quantity": "absent"}, "quantity"),
    ],
)
def test_add_validation(client, user_headers, body, field):
    product = ProductFactory()
    payload = {"product_id": product.id, "quantity": 1, **body}
    payload = {key: value for key, value in payload.items() if value != "absent"}
    problem = assert_problem(client.post("/api/cart/items/", json=payload, headers=user_headers), 422)
    assert field in problem["errors"]
    assert _cart(client, user_headers)["items"] == []


@pytest.mark.parametrize("quantity", [0, -1, "2", 10001, None])
def test_patch_validation(client, user_headers, quantity):
    product = ProductFactory()
    line = _add(client, user_headers, product.id, 2).get_json()
    response = client.patch(
        f"/api/cart/items/{line['id']}/", json={"quantity": quantity}, headers=user_headers
    )
    problem = assert_problem(response, 422)
    assert "quantity" in problem["errors"]
    assert _cart(client, user_headers)["items"][0]["quantity"] == 2


def test_another_users_line_is_404_and_untouched(client, user_headers):
    _, other_headers = new_customer(client)
    product = ProductFactory()
    line = _add(client, user_headers, product.id, 2).get_json()
    before = _cart(client, user_headers)

    patched = client.patch(f"/api/cart/items/{line['id']}/", json={"quantity": 9}, headers=other_headers)
    assert_problem(patched, 404)
    assert_problem(client.delete(f"/api/cart/items/{line['id']}/", headers=other_headers), 404)
    # Emptying one's own cart leaves others' alone.
    assert client.delete("/api/cart/", headers=other_headers).status_code == 204

    assert _cart(client, user_headers) == before
    assert _cart(client, other_headers)["items"] == []


def test_unknown_line_is_404(client, user_headers):
    assert_problem(client.patch("/api/cart/items/987654/", json={"quantity": 1}, headers=user_headers), 404)
    assert_problem(client.delete("/api/cart/items/987654/", headers=user_headers), 404)


def test_paths_without_the_final_slash(client, user_headers):
    product = ProductFactory(price=Decimal("2.50"))

    added = client.post(
        "/api/cart/items", json={"product_id": product.id, "quantity": 1}, headers=user_headers
    )
    assert added.status_code == 201, added.get_json()
    line_id = added.get_json()["id"]
    again = client.post(
        "/api/cart/items", json={"product_id": product.id, "quantity": 1}, headers=user_headers
    )
    assert again.status_code == 200 and again.get_json()["id"] == line_id

    patched = client.patch(f"/api/cart/items/{line_id}", json={"quantity": 4}, headers=user_headers)
    assert patched.status_code == 200 and patched.get_json()["line_total"] == "10.00"
    cart = client.get("/api/cart", headers=user_headers)
    assert cart.status_code == 200 and cart.get_json()["total_amount"] == "10.00"

    assert client.delete(f"/api/cart/items/{line_id}", headers=user_headers).status_code == 204
    readded = client.post(
        "/api/cart/items", json={"product_id": product.id, "quantity": 1}, headers=user_headers
    )
    assert readded.status_code == 201
    assert client.delete("/api/cart", headers=user_headers).status_code == 204
    assert _cart(client, user_headers)["items"] == []


def test_repeated_adds_cannot_pass_the_line_limit(client, user_headers):
    product = ProductFactory(stock_quantity=50_000)
    body = {"product_id": product.id, "quantity": 6_000}
    assert client.post("/api/cart/items/", json=body, headers=user_headers).status_code == 201
    over = client.post("/api/cart/items/", json=body, headers=user_headers)
    assert over.status_code == 422 and "quantity" in over.get_json()["errors"]
    # The refused add changed nothing.
    items = client.get("/api/cart/", headers=user_headers).get_json()["items"]
    assert [item["quantity"] for item in items] == [6_000]
