"""Checkouts placed in batches on PostgreSQL (migration 0009, ecommerce/orders/batching.py).

One call of place_orders() places several carts in one transaction: each member gets its own
outcome (placed, short, empty), a refused member changes nothing, and the members see the stock
the members before them left. Through the API, checkouts that arrive while a call runs go
together in the next one, and a flash sale for a few units sells exactly those units.
"""

from __future__ import annotations

import json
import time

from prometheus_client import REGISTRY
from sqlalchemy import event, func, select, text

from ecommerce.core.models import utcnow
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderItem
from ecommerce.products.models import Product
from tests.factories import CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, login, run_concurrently
from tests.integration.test_checkout_concurrency import cart_lines


def _member(user_id: int) -> dict:
    return {
        "user_id": user_id,
        "address": "1 Test Street",
        "method": None,
        "cost": "0.00",
        "route": None,
        "now": utcnow().isoformat(),
        "key_id": None,
        "key_token": None,
    }


def _batches() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("ecommerce_checkout_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("ecommerce_checkout_batch_size_sum") or 0.0
    return count, total


def test_one_call_places_each_member_with_its_own_outcome(make_instance):
    app = make_instance()
    with app.app_context():
        product = ProductFactory(category_id=CategoryFactory().id, stock_quantity=3)
        product_id, name = product.id, product.name
        users = [(user.id, user.username) for user in UserFactory.create_batch(4)]
    client = app.test_client()
    wanted = {users[0][0]: 2, users[1][0]: 2, users[3][0]: 1}  # users[2] has no cart at all
    for user_id, username in users:
        if user_id in wanted:
            token = login(client, username)["access_token"]
            added = client.post(
                "/api/cart/items/",
                json={"product_id": product_id, "quantity": wanted[user_id]},
                headers=bearer(token),
            )
            assert added.status_code == 201, added.get_json()

    with app.app_context():
        results = db.session.execute(
            text("SELECT place_orders(CAST(:orders AS jsonb))"),
            {"orders": json.dumps([_member(user_id) for user_id, _ in users])},
        ).scalar_one()
        db.session.commit()
        stock = db.session.scalar(select(Product.stock_quantity).where(Product.id == product_id))
        orders = dict(
            db.session.execute(
                select(Order.user_id, func.sum(OrderItem.quantity))
                .join(OrderItem, OrderItem.order_id == Order.id)
                .group_by(Order.user_id)
            ).all()
        )

    assert [result["outcome"] for result in results] == ["placed", "short", "empty", "placed"]
    # The second member saw the stock the first left (1 of 3), not the stock before the batch.
    assert results[1]["products"] == [
        {"product_id": product_id, "name": name, "requested": 2, "available": 1}
    ]
    assert results[0]["order"]["items"][0]["quantity"] == 2
    assert results[3]["order"]["items"][0]["quantity"] == 1
    assert stock == 0
    assert orders == {users[0][0]: 2, users[3][0]: 1}
    # The refused member's cart is as it was; the placed ones' carts are empty.
    assert cart_lines(app, users[1][0]) == [(product_id, 2)]
    assert cart_lines(app, users[0][0]) == [] and cart_lines(app, users[3][0]) == []


def test_checkouts_that_arrive_during_a_call_are_placed_together_and_never_oversell(make_instance):
    """The first call is held a moment in the database driver; the checkouts that arrive
    meanwhile queue and go in the next call. 16 buyers, 10 units: 10 orders, 6 refusals."""
    app = make_instance(DB_POOL_SIZE=20, DB_MAX_OVERFLOW=0)
    with app.app_context():
        product_id = ProductFactory(category_id=CategoryFactory().id, stock_quantity=10).id
        usernames = [user.username for user in UserFactory.create_batch(16)]
        engine = db.engine
    client = app.test_client()
    tokens = [login(client, username)["access_token"] for username in usernames]
    for token in tokens:
        added = client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=bearer(token)
        )
        assert added.status_code == 201
    held: list[int] = []

    def hold_the_first_call(_connection, _cursor, statement, *_args) -> None:
        if "place_orders(" in statement and not held:
            held.append(1)
            time.sleep(0.5)

    def buyer(token: str):
        return lambda: app.test_client().post("/api/orders/", json={}, headers=bearer(token))

    batches_before, members_before = _batches()
    event.listen(engine, "before_cursor_execute", hold_the_first_call)
    try:
        responses = run_concurrently([buyer(token) for token in tokens])
    finally:
        event.remove(engine, "before_cursor_execute", hold_the_first_call)
    batches_after, members_after = _batches()

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 10 + [409] * 6, [r.get_json() for r in responses if r.status_code >= 500]
    assert members_after - members_before == 16
    assert batches_after - batches_before < 16, "no checkout waited for the running call"
    with app.app_context():
        assert db.session.scalar(select(Product.stock_quantity).where(Product.id == product_id)) == 0
        sold = db.session.scalar(
            select(func.sum(OrderItem.quantity)).where(OrderItem.product_id == product_id)
        )
        assert sold == 10


def test_a_member_told_to_retry_can_retry_with_the_same_idempotency_key(make_instance, monkeypatch):
    """A member answered 'retry' (its locks deadlocked; nothing of it changed) gets 503 with
    Retry-After, and its Idempotency-Key is released, not stored: the retry with the same key
    places the order (a stored 503 would be replayed for as long as the key is kept)."""
    from ecommerce.orders import checkout

    app = make_instance()
    with app.app_context():
        product_id = ProductFactory(category_id=CategoryFactory().id, stock_quantity=5).id
        username = UserFactory().username
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    added = client.post("/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers)
    assert added.status_code == 201
    place = checkout._place_orders
    told: list[bool] = []

    def deadlocked_once(session, members):
        if not told:
            told.append(True)
            return [{"outcome": "retry"} for _ in members]
        return place(session, members)

    monkeypatch.setattr(checkout, "_place_orders", deadlocked_once)
    keyed = {**headers, "Idempotency-Key": "retry-me"}
    first = client.post("/api/orders/", json={}, headers=keyed)
    assert first.status_code == 503, first.get_json()
    assert first.headers["Content-Type"] == "application/problem+json"
    assert first.headers["Retry-After"] == "1"
    again = client.post("/api/orders/", json={}, headers=keyed)
    assert again.status_code == 201, again.get_json()
    assert "Idempotent-Replayed" not in again.headers
    replayed = client.post("/api/orders/", json={}, headers=keyed)
    assert replayed.status_code == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.get_json()["id"] == again.get_json()["id"]
