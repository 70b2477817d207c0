"""Orders: checkout, Idempotency-Key, history, the status machine and cancelling."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from ecommerce.extensions import db
from ecommerce.orders.models import Order
from tests.factories import ProductFactory
from tests.helpers import assert_pagination, assert_problem, capture_statements, new_customer

ORDER_FIELDS = {
    "id",
    "user_id",
    "order_status",
    "total_amount",
    "shipping_address",
    "shipping_method",
    "shipping_cost",
    "shipping_route",
    "items",
    "created_at",
    "updated_at",
}
ITEM_FIELDS = {"product_id", "quantity", "price", "created_at", "updated_at"}
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled"]
# The contract's status machine, written out here on purpose (not imported from the app).
LEGAL_MOVES = {
    "pending": {"paid", "cancelled"},
    "paid": {"shipped", "cancelled"},
    "shipped": {"delivered"},
    "delivered": set(),
    "cancelled": set(),
}
# The legal walk from a new order to each status.
WALK_TO = {
    "pending": [],
    "paid": ["paid"],
    "shipped": ["paid", "shipped"],
    "delivered": ["paid", "shipped", "delivered"],
    "cancelled": ["cancelled"],
}
ILLEGAL_MOVES = [(start, to) for start in STATUSES for to in STATUSES if to not in LEGAL_MOVES[start]]


def _fill_cart(client, headers, lines):
    for product, quantity in lines:
        response = client.post(
            "/api/cart/items/", json={"product_id": product.id, "quantity": quantity}, headers=headers
        )
        assert response.status_code in (200, 201), response.get_json()


def _cart_lines(client, headers):
    response = client.get("/api/cart/", headers=headers)
    assert response.status_code == 200
    return [(item["product_id"], item["quantity"]) for item in response.get_json()["items"]]


def _checkout(client, headers, lines, **kwargs):
    _fill_cart(client, headers, lines)
    response = client.post("/api/orders/", headers=headers, **kwargs)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _stock(client, product):
    """The stock as clients see it: through the cached product detail."""
    response = client.get(f"/api/products/{product.id}/")
    assert response.status_code == 200
    return response.get_json()["stock_quantity"]


def _order_count():
    return db.session.scalar(select(func.count()).select_from(Order))


def _order(client, headers, order_id):
    response = client.get(f"/api/orders/{order_id}/", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _move(client, admin_headers, order_id, status):
    return client.patch(f"/api/orders/{order_id}/", json={"order_status": status}, headers=admin_headers)


# --- checkout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"json": {}}, {"json": {"shipping_address": "1 Main Street, Springfield"}}, {}],
    ids=["empty-object", "with-address", "no-body"],
)
def test_checkout(client, user, user_headers, admin_headers, body):
    pen = ProductFactory(price=Decimal("19.99"), stock_quantity=10)
    clip = ProductFactory(price=Decimal("0.10"), stock_quantity=5)
    # Warm the cache: the detail must show the new stock on the very next read anyway.
    assert _stock(client, pen) == 10 and _stock(client, clip) == 5

    _fill_cart(client, user_headers, [(pen, 3), (clip, 3)])
    response = client.post("/api/orders/", headers=user_headers, **body)
    assert response.status_code == 201, response.get_json()
    order = response.get_json()
    assert ORDER_FIELDS <= set(order)
    assert isinstance(order["id"], int) and order["user_id"] == user.id
    assert order["order_status"] == "pending"
    assert order["created_at"].endswith("Z") and order["updated_at"].endswith("Z")
    if "shipping_address" in body.get("json", {}):
        assert order["shipping_address"] == body["json"]["shipping_address"]
    items = sorted(order["items"], key=lambda item: item["product_id"])
    assert all(ITEM_FIELDS <= set(item) for item in items)
    # A line is written with its order: the same moment, as the response and a later read say.
    assert {(i["created_at"], i["updated_at"]) for i in items} == {(order["created_at"],) * 2}
    assert [(i["product_id"], i["quantity"], i["price"]) for i in items] == sorted(
        [(pen.id, 3, "19.99"), (clip.id, 3, "0.10")]
    )
    expected_total = Decimal("19.99") * 3 + Decimal("0.10") * 3
    assert order["total_amount"] == "60.27" and Decimal(order["total_amount"]) == expected_total
    assert Decimal(order["total_amount"]) == sum(
        (Decimal(item["price"]) * item["quantity"] for item in items), Decimal("0")
    )

    # Stock decremented exactly, visible at once; the cart is empty.
    assert _stock(client, pen) == 7 and _stock(client, clip) == 2
    assert _cart_lines(client, user_headers) == []
    assert _order_count() == 1

    # The line keeps the price paid when the catalog price changes.
    changed = client.patch(f"/api/products/{pen.id}/", json={"price": "25.00"}, headers=admin_headers)
    assert changed.status_code == 200
    again = _order(client, user_headers, order["id"])
    assert again["total_amount"] == "60.27"
    assert {i["created_at"] for i in again["items"]} == {order["created_at"]}
    assert {item["product_id"]: item["price"] for item in again["items"]}[pen.id] == "19.99"


def test_checkout_without_the_final_slash(client, user_headers):
    product = ProductFactory(stock_quantity=4)
    _fill_cart(client, user_headers, [(product, 1)])
    response = client.post("/api/orders", json={}, headers=user_headers)
    assert response.status_code == 201, response.get_json()
    assert _stock(client, product) == 3


def test_checkout_is_401_for_anonymous(client):
    assert_problem(client.post("/api/orders/", json={}), 401)
    assert_problem(client.get("/api/orders/"), 401)
    assert_problem(client.get("/api/orders/1/"), 401)
    assert_problem(client.post("/api/orders/1/cancel/"), 401)
    assert_problem(client.patch("/api/orders/1/", json={"order_status": "paid"}), 401)


def test_empty_cart_is_409(client, user_headers):
    assert_problem(client.post("/api/orders/", json={}, headers=user_headers), 409)
    # An emptied cart too.
    product = ProductFactory()
    _fill_cart(client, user_headers, [(product, 1)])
    assert client.delete("/api/cart/", headers=user_headers).status_code == 204
    assert_problem(client.post("/api/orders/", json={}, headers=user_headers), 409)
    assert _order_count() == 0
    assert _stock(client, product) == 10


def test_insufficient_stock_names_each_short_product_and_changes_nothing(client, user_headers):
    short_a = ProductFactory(stock_quantity=2)
    short_b = ProductFactory(stock_quantity=1)
    plenty = ProductFactory(stock_quantity=10)
    _fill_cart(client, user_headers, [(plenty, 1), (short_a, 3), (short_b, 5)])
    cart_before = _cart_lines(client, user_headers)

    problem = assert_problem(client.post("/api/orders/", json={}, headers=user_headers), 409)
    short = sorted(problem["products"], key=lambda entry: entry["product_id"])
    assert short == sorted(
        [
            {"product_id": short_a.id, "name": short_a.name, "requested": 3, "available": 2},
            {"product_id": short_b.id, "name": short_b.name, "requested": 5, "available": 1},
        ],
        key=lambda entry: entry["product_id"],
    )
    # The detail is for a person: the products by name, what is left, what the cart asked for.
    assert f"{short_a.name} (only 2 left, 3 in the cart)" in problem["detail"]
    assert f"{short_b.name} (only 1 left, 5 in the cart)" in problem["detail"]
    assert plenty.name not in problem["detail"]

    # Nothing changed: every product's stock, the cart, no order.
    assert (_stock(client, short_a), _stock(client, short_b), _stock(client, plenty)) == (2, 1, 10)
    assert _cart_lines(client, user_headers) == cart_before
    assert _order_count() == 0
    listed = client.get("/api/orders/", headers=user_headers)
    assert listed.status_code == 200 and listed.get_json() == []


def test_checkout_with_exactly_the_stock_left(client, user_headers):
    product = ProductFactory(stock_quantity=3)
    _checkout(client, user_headers, [(product, 3)], json={})
    assert _stock(client, product) == 0


@pytest.mark.parametrize("body", [{"shipping_address": 5}, {"shipping_address": "x" * 1001}, {"extra": 1}])
def test_checkout_validation(client, user_headers, body):
    product = ProductFactory()
    _fill_cart(client, user_headers, [(product, 1)])
    assert_problem(client.post("/api/orders/", json=body, headers=user_headers), 422)
    assert _order_count() == 0 and _cart_lines(client, user_headers) == [(product.id, 1)]


# --- Idempotency-Key -------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_order(client, user_headers):
    product = ProductFactory(stock_quantity=10)
    _fill_cart(client, user_headers, [(product, 2)])
    key = {"Idempotency-Key": "checkout-1f3c9a"}

    first = client.post("/api/orders/", json={}, headers={**user_headers, **key})
    assert first.status_code == 201, first.get_json()
    assert "Idempotent-Replayed" not in first.headers

    # Something new in the cart: a replay must not check it out.
    _fill_cart(client, user_headers, [(product, 1)])
    retry = client.post("/api/orders/", json={}, headers={**user_headers, **key})
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    # On PostgreSQL the stored answer is written by place_order() itself: it is the order as the
    # API shows it (the same fields and formats as OrderSchema's).
    shown = client.get(f"/api/orders/{first.get_json()['id']}/", headers=user_headers).get_json()
    assert {field: shown[field] for field in first.get_json()} == first.get_json()

    assert _order_count() == 1
    assert _stock(client, product) == 8
    assert _cart_lines(client, user_headers) == [(product.id, 1)]


def test_idempotency_key_with_another_body_is_422(client, user_headers):
    product = ProductFactory(stock_quantity=10)
    _fill_cart(client, user_headers, [(product, 1)])
    key = {"Idempotency-Key": "same-key"}
    first = client.post("/api/orders/", json={"shipping_address": "A"}, headers={**user_headers, **key})
    assert first.status_code == 201

    _fill_cart(client, user_headers, [(product, 1)])
    other = client.post("/api/orders/", json={"shipping_address": "B"}, headers={**user_headers, **key})
    problem = assert_problem(other, 422)
    assert "Idempotency-Key" in problem["errors"]
    assert _order_count() == 1 and _stock(client, product) == 9
    assert _cart_lines(client, user_headers) == [(product.id, 1)]


@pytest.mark.parametrize("key", ["k" * 256, "has space", ""], ids=["256-chars", "space", "empty"])
def test_invalid_idempotency_key_is_422(client, user_headers, key):
    product = ProductFactory(stock_quantity=10)
    _fill_cart(client, user_headers, [(product, 1)])
    problem = assert_problem(
        client.post("/api/orders/", json={}, headers={**user_headers, "Idempotency-Key": key}), 422
    )
    assert "Idempotency-Key" in problem["errors"]
    assert _order_count() == 0 and _stock(client, product) == 10
    assert _cart_lines(client, user_headers) == [(product.id, 1)]


def test_idempotency_key_of_255_chars_is_fine(client, user_headers):
    product = ProductFactory()
    _fill_cart(client, user_headers, [(product, 1)])
    response = client.post("/api/orders/", json={}, headers={**user_headers, "Idempotency-Key": "k" * 255})
    assert response.status_code == 201, response.get_json()


def test_idempotency_keys_are_per_user(client, user, user_headers):
    other, other_headers = new_customer(client)
    product = ProductFactory(stock_quantity=10)
    key = {"Idempotency-Key": "shared-key"}

    _fill_cart(client, user_headers, [(product, 1)])
    mine = client.post("/api/orders/", json={}, headers={**user_headers, **key})
    _fill_cart(client, other_headers, [(product, 2)])
    theirs = client.post("/api/orders/", json={}, headers={**other_headers, **key})

    assert mine.status_code == 201 and theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    assert mine.get_json()["user_id"] == user.id and theirs.get_json()["user_id"] == other.id
    assert _order_count() == 2 and _stock(client, product) == 7


def test_insufficient_stock_with_a_key_is_replayed(client, user_headers):
    product = ProductFactory(stock_quantity=1)
    _fill_cart(client, user_headers, [(product, 2)])
    key = {"Idempotency-Key": "short-stock"}

    first = client.post("/api/orders/", json={}, headers={**user_headers, **key})
    problem = assert_problem(first, 409)
    assert problem["products"] == [
        {"product_id": product.id, "name": product.name, "requested": 2, "available": 1}
    ]
    assert "Idempotent-Replayed" not in first.headers

    retry = client.post("/api/orders/", json={}, headers={**user_headers, **key})
    assert assert_problem(retry, 409) == problem
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert _order_count() == 0 and _stock(client, product) == 1
    assert _cart_lines(client, user_headers) == [(product.id, 2)]


# --- listing ---------------------------------------------------------------------------------


def test_list_orders(client, user, user_headers, admin_headers):
    other, other_headers = new_customer(client)
    product = ProductFactory(stock_quantity=100)
    mine = [_checkout(client, user_headers, [(product, n)], json={}) for n in (1, 2, 3)]
    theirs = _checkout(client, other_headers, [(product, 4)], json={})

    assert_problem(client.get("/api/orders/"), 401)

    listed = client.get("/api/orders/", headers=user_headers)
    assert listed.status_code == 200
    body = listed.get_json()
    assert [order["id"] for order in body] == [order["id"] for order in reversed(mine)]  # newest first
    assert [order["items"][0]["quantity"] for order in body] == [3, 2, 1]
    assert body[-1] == mine[0]
    assert_pagination(listed, total=3)
    assert client.get("/api/orders", headers=user_headers).get_json() == body  # no redirect

    # Paginated, with X-Pagination and Link.
    page = client.get("/api/orders/?page_size=2", headers=user_headers)
    assert [order["id"] for order in page.get_json()] == [mine[2]["id"], mine[1]["id"]]
    assert_pagination(page, total=3, page=1, page_size=2)
    page = client.get("/api/orders/?page_size=2&page=2", headers=user_headers)
    assert [order["id"] for order in page.get_json()] == [mine[0]["id"]]
    assert_pagination(page, total=3, page=2, page_size=2)

    # A customer sees only their own orders, whatever the filter says.
    spying = client.get(f"/api/orders/?user_id={other.id}", headers=user_headers)
    assert spying.status_code == 200
    assert [order["id"] for order in spying.get_json()] == [order["id"] for order in reversed(mine)]
    assert [order["id"] for order in client.get("/api/orders/", headers=other_headers).get_json()] == [
        theirs["id"]
    ]

    # The admin sees everyone's, and filters by user and status.
    cancelled = client.post(f"/api/orders/{mine[0]['id']}/cancel/", headers=user_headers)
    assert cancelled.status_code == 200
    everything = client.get("/api/orders/", headers=admin_headers).get_json()
    assert [order["id"] for order in everything] == [theirs["id"]] + [o["id"] for o in reversed(mine)]
    by_user = client.get(f"/api/orders/?user_id={other.id}", headers=admin_headers).get_json()
    assert [order["id"] for order in by_user] == [theirs["id"]]
    by_status = client.get("/api/orders/?order_status=cancelled", headers=admin_headers).get_json()
    assert [order["id"] for order in by_status] == [mine[0]["id"]]
    both = client.get(f"/api/orders/?order_status=pending&user_id={user.id}", headers=admin_headers)
    assert [order["id"] for order in both.get_json()] == [mine[2]["id"], mine[1]["id"]]
    own_pending = client.get("/api/orders/?order_status=pending", headers=user_headers).get_json()
    assert [order["id"] for order in own_pending] == [mine[2]["id"], mine[1]["id"]]


@pytest.mark.parametrize("query", ["order_status=bogus", "user_id=0", "user_id=abc", "page_size=101"])
def test_bad_list_queries_are_422(client, admin_headers, query):
    assert_problem(client.get(f"/api/orders/?{query}", headers=admin_headers), 422)


def test_listing_takes_the_same_number_of_queries_whatever_the_page_size(app, client):
    products = [ProductFactory(stock_quantity=1000) for _ in range(2)]
    few, few_headers = new_customer(client)
    many, many_headers = new_customer(client)
    for _ in range(2):
        _checkout(client, few_headers, [(products[0], 1), (products[1], 2)], json={})
    for _ in range(30):
        _checkout(client, many_headers, [(products[0], 1), (products[1], 2)], json={})

    def count(headers):
        with capture_statements(app) as sent:
            response = client.get("/api/orders/?page_size=30", headers=headers)
        assert response.status_code == 200
        return len(response.get_json()), len(sent)

    few_rows, few_queries = count(few_headers)
    many_rows, many_queries = count(many_headers)
    assert (few_rows, many_rows) == (2, 30)
    assert few_queries > 0
    assert many_queries == few_queries


# --- one order -------------------------------------------------------------------------------


def test_order_detail(client, user, user_headers, admin_headers):
    _, other_headers = new_customer(client)
    product = ProductFactory(price=Decimal("4.25"))
    order = _checkout(client, user_headers, [(product, 2)], json={})

    detail = _order(client, user_headers, order["id"])
    assert ORDER_FIELDS | {"payments", "events"} <= set(detail)
    assert {key: detail[key] for key in order} == order
    assert detail["payments"] == []
    assert len(detail["events"]) == 1
    placed = detail["events"][0]
    assert {key: placed[key] for key in ("from_status", "to_status", "actor_id")} == {
        "from_status": None,
        "to_status": "pending",
        "actor_id": user.id,
    }
    assert isinstance(placed["note"], str) and placed["created_at"].endswith("Z")
    assert client.get(f"/api/orders/{order['id']}", headers=user_headers).get_json() == detail

    # Another customer's order does not exist for them.
    assert_problem(client.get(f"/api/orders/{order['id']}/", headers=other_headers), 404)
    assert _order(client, admin_headers, order["id"]) == detail
    assert_problem(client.get("/api/orders/987654/", headers=user_headers), 404)
    assert_problem(client.get("/api/orders/987654/", headers=admin_headers), 404)


# --- the status machine ----------------------------------------------------------------------


def test_walk_through_the_status_machine(client, user, user_headers, admin, admin_headers):
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 2)], json={})

    previous = "pending"
    for status in ("paid", "shipped", "delivered"):
        moved = _move(client, admin_headers, order["id"], status)
        assert moved.status_code == 200, moved.get_json()
        assert moved.get_json()["order_status"] == status
        event = moved.get_json()["events"][-1]
        assert (event["from_status"], event["to_status"], event["actor_id"]) == (previous, status, admin.id)
        previous = status

    detail = _order(client, user_headers, order["id"])
    assert detail["order_status"] == "delivered"
    assert [(e["from_status"], e["to_status"], e["actor_id"]) for e in detail["events"]] == [
        (None, "pending", user.id),
        ("pending", "paid", admin.id),
        ("paid", "shipped", admin.id),
        ("shipped", "delivered", admin.id),
    ]
    # Shipping and delivering do not touch the stock.
    assert _stock(client, product) == 8


@pytest.mark.parametrize("start, to", ILLEGAL_MOVES, ids=[f"{s}-to-{t}" for s, t in ILLEGAL_MOVES])
def test_illegal_moves_are_409(client, user_headers, admin_headers, start, to):
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 2)], json={})
    for status in WALK_TO[start]:
        assert _move(client, admin_headers, order["id"], status).status_code == 200
    before = _order(client, admin_headers, order["id"])
    stock = _stock(client, product)

    assert_problem(_move(client, admin_headers, order["id"], to), 409)
    assert _order(client, admin_headers, order["id"]) == before
    assert _stock(client, product) == stock


@pytest.mark.parametrize(
    "body", [{"order_status": "refunded"}, {"order_status": "PAID"}, {"order_status": None}, {}]
)
def test_invalid_status_is_422(client, user_headers, admin_headers, body):
    product = ProductFactory()
    order = _checkout(client, user_headers, [(product, 1)], json={})
    problem = assert_problem(
        client.patch(f"/api/orders/{order['id']}/", json=body, headers=admin_headers), 422
    )
    assert "order_status" in problem["errors"]
    assert _order(client, admin_headers, order["id"])["order_status"] == "pending"


def test_only_the_admin_changes_status(client, user_headers, admin_headers):
    product = ProductFactory()
    order = _checkout(client, user_headers, [(product, 1)], json={})
    assert_problem(_move(client, user_headers, order["id"], "paid"), 403)
    assert _order(client, user_headers, order["id"])["order_status"] == "pending"
    assert_problem(_move(client, admin_headers, 987654, "paid"), 404)


# --- cancelling ------------------------------------------------------------------------------


def test_owner_cancels_a_pending_order(client, user, user_headers):
    pen = ProductFactory(stock_quantity=10)
    clip = ProductFactory(stock_quantity=6)
    order = _checkout(client, user_headers, [(pen, 3), (clip, 6)], json={})
    assert (_stock(client, pen), _stock(client, clip)) == (7, 0)

    cancelled = client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers)
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["order_status"] == "cancelled"
    event = cancelled.get_json()["events"][-1]
    assert (event["from_status"], event["to_status"], event["actor_id"]) == ("pending", "cancelled", user.id)
    assert (_stock(client, pen), _stock(client, clip)) == (10, 6)

    # Only once: the second cancel is 409 and gives nothing back again.
    assert_problem(client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers), 409)
    assert_problem(client.post(f"/api/orders/{order['id']}/cancel", headers=user_headers), 409)
    assert (_stock(client, pen), _stock(client, clip)) == (10, 6)
    assert len(_order(client, user_headers, order["id"])["events"]) == 2


@pytest.mark.parametrize("how", ["cancel-endpoint", "patch"])
def test_admin_cancels_a_paid_order(client, user_headers, admin, admin_headers, how):
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 4)], json={})
    assert _move(client, admin_headers, order["id"], "paid").status_code == 200
    assert _stock(client, product) == 6

    if how == "patch":
        cancelled = _move(client, admin_headers, order["id"], "cancelled")
    else:
        cancelled = client.post(f"/api/orders/{order['id']}/cancel/", headers=admin_headers)
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["order_status"] == "cancelled"
    event = cancelled.get_json()["events"][-1]
    assert (event["from_status"], event["to_status"], event["actor_id"]) == ("paid", "cancelled", admin.id)
    assert _stock(client, product) == 10


def test_owner_cancels_a_paid_order(client, user_headers, admin_headers):
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 4)], json={})
    assert _move(client, admin_headers, order["id"], "paid").status_code == 200
    cancelled = client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers)
    assert cancelled.status_code == 200 and cancelled.get_json()["order_status"] == "cancelled"
    assert _stock(client, product) == 10


@pytest.mark.parametrize("status", ["shipped", "delivered"])
def test_a_shipped_order_cannot_be_cancelled(client, user_headers, admin_headers, status):
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 4)], json={})
    for step in WALK_TO[status]:
        assert _move(client, admin_headers, order["id"], step).status_code == 200

    assert_problem(client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers), 409)
    assert_problem(client.post(f"/api/orders/{order['id']}/cancel/", headers=admin_headers), 409)
    assert _order(client, user_headers, order["id"])["order_status"] == status
    assert _stock(client, product) == 6


def test_another_users_order_cannot_be_cancelled(client, user_headers):
    _, other_headers = new_customer(client)
    product = ProductFactory(stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 4)], json={})

    assert_problem(client.post(f"/api/orders/{order['id']}/cancel/", headers=other_headers), 404)
    assert_problem(client.post("/api/orders/987654/cancel/", headers=other_headers), 404)
    assert _order(client, user_headers, order["id"])["order_status"] == "pending"
    assert _stock(client, product) == 6


def test_a_cancelled_order_gives_back_stock_even_after_a_price_change(client, user_headers, admin_headers):
    product = ProductFactory(price=Decimal("5.00"), stock_quantity=10)
    order = _checkout(client, user_headers, [(product, 2)], json={})
    changed = client.patch(f"/api/products/{product.id}/", json={"price": "9.00"}, headers=admin_headers)
    assert changed.status_code == 200
    cancelled = client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers).get_json()
    assert cancelled["total_amount"] == "10.00" and cancelled["items"][0]["price"] == "5.00"
    assert _stock(client, product) == 10
