"""Payments through the API: 202 with a pending payment and a job on the queue, the 4xx rules,
Idempotency-Key, and who may read a payment. No consumer runs here, so payments stay pending
(tests/integration/test_jobs.py runs the real worker)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from ecommerce import tasks
from ecommerce.extensions import db
from ecommerce.payments.models import Payment, PaymentStatus
from tests.factories import ProductFactory
from tests.helpers import assert_problem, new_customer

PAYMENT_FIELDS = {"id", "order_id", "payment_method", "amount", "status"}
VISA = {"payment_method": "card", "token": "tok_visa"}


def _order(client, headers, lines=((Decimal("19.99"), 2),)):
    """A pending order of ``headers``' user: one product per (price, quantity) line."""
    for price, quantity in lines:
        product = ProductFactory(price=price, stock_quantity=10)
        added = client.post(
            "/api/cart/items/", json={"product_id": product.id, "quantity": quantity}, headers=headers
        )
        assert added.status_code in (200, 201), added.get_json()
    placed = client.post("/api/orders/", json={}, headers=headers)
    assert placed.status_code == 201, placed.get_json()
    return placed.get_json()


def _pay(client, headers, order_id, body=VISA, **kwargs):
    return client.post(f"/api/orders/{order_id}/payments/", json=body, headers=headers, **kwargs)


def _payments_of(order_id) -> list[Payment]:
    return list(db.session.scalars(select(Payment).where(Payment.order_id == order_id).order_by(Payment.id)))


def _queued() -> int:
    """Jobs waiting in the queue (the test Redis: nothing consumes it during API tests)."""
    return tasks.huey.pending_count()


def test_pay_for_a_pending_order(client, user, user_headers):
    order = _order(client, user_headers, [(Decimal("19.99"), 2), (Decimal("0.05"), 3)])
    assert order["total_amount"] == "40.13"
    before = _queued()

    response = _pay(client, user_headers, order["id"])
    assert response.status_code == 202, response.get_json()
    payment = response.get_json()
    assert PAYMENT_FIELDS <= set(payment)
    assert payment["order_id"] == order["id"]
    assert payment["payment_method"] == "card"
    assert payment["amount"] == "40.13" and isinstance(payment["amount"], str)
    assert payment["status"] == "pending"
    assert "token" not in payment and "idempotency_key" not in payment

    # One job on the queue, for this payment.
    assert _queued() == before + 1
    (stored,) = _payments_of(order["id"])
    assert stored.id == payment["id"] and stored.status == PaymentStatus.PENDING
    assert stored.amount == Decimal("40.13") and stored.token == "tok_visa"
    assert len(stored.idempotency_key) >= 16

    # The order, still pending, lists its payment.
    detail = client.get(f"/api/orders/{order['id']}/", headers=user_headers).get_json()
    assert detail["order_status"] == "pending"
    assert [p["id"] for p in detail["payments"]] == [payment["id"]]
    assert {k: detail["payments"][0][k] for k in PAYMENT_FIELDS} == {k: payment[k] for k in PAYMENT_FIELDS}


@pytest.mark.parametrize("method", ["card", "paypal", "bank_transfer"])
def test_every_payment_method_is_accepted(client, user_headers, method):
    order = _order(client, user_headers)
    response = _pay(client, user_headers, order["id"], {"payment_method": method, "token": "tok_x"})
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["payment_method"] == method


def test_pay_without_the_final_slash(client, user_headers):
    order = _order(client, user_headers)
    response = client.post(f"/api/orders/{order['id']}/payments", json=VISA, headers=user_headers)
    assert response.status_code == 202, response.get_json()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"payment_method": "cash", "token": "tok_visa"}, "payment_method"),
        ({"payment_method": "", "token": "tok_visa"}, "payment_method"),
        ({"token": "tok_visa"}, "payment_method"),
        ({"payment_method": "card"}, "token"),
        ({"payment_method": "card", "token": ""}, "token"),
        ({"payment_method": "card", "token": "t" * 256}, "token"),
        ({"payment_method": "card", "token": 42}, "token"),
    ],
    ids=["unknown-method", "empty-method", "no-method", "no-token", "empty-token", "long-token", "int-token"],
)
def test_validation_is_422(client, user_headers, body, field):
    order = _order(client, user_headers)
    before = _queued()
    problem = assert_problem(_pay(client, user_headers, order["id"], body), 422)
    assert field in str(problem["errors"])
    assert _payments_of(order["id"]) == [] and _queued() == before


def test_anonymous_is_401(client, user_headers):
    order = _order(client, user_headers)
    assert_problem(client.post(f"/api/orders/{order['id']}/payments/", json=VISA), 401)
    assert _payments_of(order["id"]) == []


def test_another_users_order_is_404(client, user_headers, admin_headers):
    order = _order(client, user_headers)
    _, other_headers = new_customer(client)
    before = _queued()
    assert_problem(_pay(client, other_headers, order["id"]), 404)
    # Not even an admin pays for someone else's order: payments are the owner's.
    assert_problem(_pay(client, admin_headers, order["id"]), 404)
    assert _payments_of(order["id"]) == [] and _queued() == before


def test_unknown_order_is_404(client, user_headers):
    assert_problem(_pay(client, user_headers, 987654), 404)
    assert_problem(_pay(client, user_headers, 2**31), 404)


def test_a_cancelled_order_cannot_be_paid(client, user_headers):
    order = _order(client, user_headers)
    assert client.post(f"/api/orders/{order['id']}/cancel/", headers=user_headers).status_code == 200
    before = _queued()
    problem = assert_problem(_pay(client, user_headers, order["id"]), 409)
    assert "cancelled" in problem["detail"]
    assert _payments_of(order["id"]) == [] and _queued() == before


@pytest.mark.parametrize("walk", [["paid"], ["paid", "shipped"]], ids=["paid", "shipped"])
def test_an_order_that_is_no_longer_pending_cannot_be_paid(client, user_headers, admin_headers, walk):
    order = _order(client, user_headers)
    for status in walk:
        moved = client.patch(
            f"/api/orders/{order['id']}/", json={"order_status": status}, headers=admin_headers
        )
        assert moved.status_code == 200, moved.get_json()
    before = _queued()
    problem = assert_problem(_pay(client, user_headers, order["id"]), 409)
    assert walk[-1] in problem["detail"]
    assert _payments_of(order["id"]) == [] and _queued() == before


def test_a_second_payment_while_one_is_pending_is_409(client, user_headers):
    order = _order(client, user_headers)
    first = _pay(client, user_headers, order["id"])
    assert first.status_code == 202
    before = _queued()
    assert_problem(
        _pay(client, user_headers, order["id"], {"payment_method": "paypal", "token": "tok_2"}), 409
    )
    assert [p.id for p in _payments_of(order["id"])] == [first.get_json()["id"]]
    assert _queued() == before


def test_a_second_payment_after_a_success_is_409(client, user_headers):
    order = _order(client, user_headers)
    first = _pay(client, user_headers, order["id"]).get_json()
    # As the worker would record it, without moving the order (the order is still pending).
    db.session.execute(
        update(Payment).where(Payment.id == first["id"]).values(status=PaymentStatus.SUCCEEDED)
    )
    db.session.commit()
    assert_problem(_pay(client, user_headers, order["id"]), 409)
    assert len(_payments_of(order["id"])) == 1


def test_a_failed_payment_may_be_followed_by_another(client, user_headers):
    order = _order(client, user_headers)
    first = _pay(client, user_headers, order["id"], {"payment_method": "card", "token": "tok_decline"})
    db.session.execute(
        update(Payment)
        .where(Payment.id == first.get_json()["id"])
        .values(status=PaymentStatus.FAILED, failure_reason="card_declined")
    )
    db.session.commit()

    failed = client.get(f"/api/payments/{first.get_json()['id']}/", headers=user_headers).get_json()
    assert failed["status"] == "failed" and failed["failure_reason"] == "card_declined"
    second = _pay(client, user_headers, order["id"])
    assert second.status_code == 202, second.get_json()
    assert second.get_json()["id"] != first.get_json()["id"]
    detail = client.get(f"/api/orders/{order['id']}/", headers=user_headers).get_json()
    assert [(p["id"], p["status"]) for p in detail["payments"]] == [
        (first.get_json()["id"], "failed"),
        (second.get_json()["id"], "pending"),
    ]


# --- Idempotency-Key -------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_payment(client, user_headers):
    order = _order(client, user_headers)
    key = {**user_headers, "Idempotency-Key": "pay-7c1e5b"}
    before = _queued()

    first = _pay(client, key, order["id"])
    assert first.status_code == 202, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    retry = _pay(client, key, order["id"])
    assert retry.status_code == 202, retry.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["id"] == first.get_json()["id"]
    assert retry.get_json() == first.get_json()

    # One payment, one job.
    assert [p.id for p in _payments_of(order["id"])] == [first.get_json()["id"]]
    assert _queued() == before + 1

    # The same key with another body is 422; without a key, a second payment is 409.
    other = _pay(client, key, order["id"], {"payment_method": "paypal", "token": "tok_visa"})
    assert "Idempotency-Key" in assert_problem(other, 422)["errors"]
    assert_problem(_pay(client, user_headers, order["id"]), 409)
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 1


def test_idempotency_key_replays_a_409(client, user_headers):
    order = _order(client, user_headers)
    assert _pay(client, user_headers, order["id"]).status_code == 202
    key = {**user_headers, "Idempotency-Key": "pay-again"}
    first = assert_problem(_pay(client, key, order["id"]), 409)
    retry = _pay(client, key, order["id"])
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert assert_problem(retry, 409) == first


# --- reading a payment -----------------------------------------------------------------------


def test_read_a_payment(client, user_headers, admin_headers):
    order = _order(client, user_headers)
    payment = _pay(client, user_headers, order["id"]).get_json()
    _, other_headers = new_customer(client)
    path = f"/api/payments/{payment['id']}/"

    mine = client.get(path, headers=user_headers)
    assert mine.status_code == 200
    assert {k: mine.get_json()[k] for k in PAYMENT_FIELDS} == {k: payment[k] for k in PAYMENT_FIELDS}
    assert mine.get_json()["created_at"].endswith("Z")
    assert client.get(path.rstrip("/"), headers=user_headers).get_json() == mine.get_json()

    by_admin = client.get(path, headers=admin_headers)
    assert by_admin.status_code == 200 and by_admin.get_json() == mine.get_json()

    assert_problem(client.get(path, headers=other_headers), 404)
    assert_problem(client.get(path), 401)
    assert_problem(client.get("/api/payments/987654/", headers=user_headers), 404)
    assert_problem(client.get("/api/payments/987654/", headers=admin_headers), 404)
