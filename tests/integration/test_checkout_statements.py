"""How many SQL statements (round trips to PostgreSQL) one checkout and the add-to-cart before it
cost, and that the number does not grow with the cart: the lever behind checkout throughput
(docs/performance_tuning.md). A change that adds a statement fails here."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, capture_statements, login

# The login check; with an Idempotency-Key its claim (committed on its own) and the claim's row
# lock; the checkout itself: one call of place_orders(), which also stores the key's answer. Plus
# BEGIN and COMMIT for each transaction, which psycopg2 sends without the statement hooks seeing
# them (place_orders() runs in autocommit: none around it).
CHECKOUT_WITH_KEY = 4
CHECKOUT_WITHOUT_KEY = 2
# The login check and the upsert of the line, which also returns its product's price for the
# answer (on PostgreSQL).
ADD_TO_CART = 2


def _counted(app, call) -> tuple[list[str], object]:
    """The statements ``call`` makes the app send, shortened to a line each, and its answer."""
    with capture_statements(app) as sent:
        response = call()
    return [" ".join(statement.split())[:90] for statement in sent], response


def _checkout_statements(client, app, lines: int, *, key: bool = True) -> dict[str, list[str]]:
    with app.app_context():
        user = UserFactory()
        username = user.username
        products = [ProductFactory(stock_quantity=10).id for _ in range(lines)]
    headers = bearer(login(client, username)["access_token"])
    # The first add makes the cart; count a later one, as a returning buyer's.
    added = client.post("/api/cart/items/", json={"product_id": products[0], "quantity": 1}, headers=headers)
    assert added.status_code == 201, added.get_json()
    seen: dict[str, list[str]] = {"adds": []}
    for product_id in products[1:] + products[:1]:  # new lines, then one added to again
        seen["add"], added = _counted(
            app,
            lambda product_id=product_id: client.post(
                "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers
            ),
        )
        assert added.status_code == (200 if product_id == products[0] else 201), added.get_json()
        seen["adds"].append(seen["add"])
    keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex} if key else headers
    seen["checkout"], response = _counted(app, lambda: client.post("/api/orders/", json={}, headers=keyed))
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["items"]) == lines
    return seen


@pytest.mark.usefixtures("committed")
def test_a_checkout_costs_a_fixed_number_of_statements(app, capsys):
    client = app.test_client()
    one = _checkout_statements(client, app, 1)
    five = _checkout_statements(client, app, 5)
    unkeyed = _checkout_statements(client, app, 3, key=False)
    with capsys.disabled():
        print(f"\ncheckout statements (1 line, Idempotency-Key): {len(one['checkout'])}")
        for statement in one["checkout"]:
            print("  ", statement)
        print(f"add-to-cart statements: {len(one['add'])}")
        for statement in one["add"]:
            print("  ", statement)
    assert len(one["checkout"]) == len(five["checkout"]) == CHECKOUT_WITH_KEY, (one, five)
    assert len(unkeyed["checkout"]) == CHECKOUT_WITHOUT_KEY, unkeyed
    for adds in (one["adds"], five["adds"], unkeyed["adds"]):
        assert [len(add) for add in adds] == [ADD_TO_CART] * len(adds), adds
