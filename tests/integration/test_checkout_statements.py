"""How many SQL statements (round trips to PostgreSQL) one checkout costs, and that the number
does not grow with the cart: the lever behind checkout throughput (docs/performance_tuning.md)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from ecommerce.extensions import db
from tests.conftest import bearer, login
from tests.factories import ProductFactory, UserFactory


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn, _cursor, statement, *_args) -> None:
        self.seen.append(" ".join(statement.split())[:90])


def _checkout_statements(client, app, lines: int) -> list[str]:
    with app.app_context():
        user = UserFactory()
        username = user.username
        products = [ProductFactory(stock_quantity=10).id for _ in range(lines)]
    headers = bearer(login(client, username)["access_token"])
    for product_id in products:
        added = client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers
        )
        assert added.status_code in (200, 201), added.get_json()
    counter = Statements()
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", counter)
    try:
        response = client.post(
            "/api/orders/", json={}, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
        )
    finally:
        event.remove(engine, "before_cursor_execute", counter)
    assert response.status_code == 201, response.get_json()
    return counter.seen


@pytest.mark.usefixtures("committed")
def test_a_checkout_costs_a_fixed_number_of_statements(app, capsys):
    client = app.test_client()
    one = _checkout_statements(client, app, 1)
    five = _checkout_statements(client, app, 5)
    with capsys.disabled():
        print(f"\ncheckout statements (1 line): {len(one)}")
        for statement in one:
            print("  ", statement)
    assert len(five) == len(one), (one, five)
