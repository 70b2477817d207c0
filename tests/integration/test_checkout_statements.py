"""How many SQL statements (round trips to PostgreSQL) one checkout and the add-to-cart before it
cost, and that the number does not grow with the cart: the lever behind checkout throughput
(docs/performance_tuning.md). A change that adds a statement fails here."""

from __future__ import annotations

import uuid

import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS

from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, capture_statements, login, observe_statements

# The login check; with an Idempotency-Key its claim (committed on its own) and the claim's row
# lock; the checkout itself: one call of place_orders(), which also stores the key's answer. Plus
# BEGIN and COMMIT for each transaction, which psycopg2 sends without the statement hooks seeing
# them (the login check and place_orders() run in autocommit: none around them; see
# test_adds_and_checkouts_open_no_transaction_of_their_own).
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


def _transaction_states(app):
    """Each statement the app sends meanwhile, with the server's transaction status right after
    it as psycopg2 reports it: IDLE after a statement run in autocommit, INTRANS after one run
    inside a transaction (which psycopg2 opened with a BEGIN the statement hooks do not see)."""
    return observe_statements(
        app,
        "after_cursor_execute",
        lambda conn, statement, _parameters: (
            " ".join(statement.split())[:60],
            conn.connection.dbapi_connection.info.transaction_status,
        ),
    )


@pytest.mark.usefixtures("committed")
def test_adds_and_checkouts_open_no_transaction_of_their_own(app):
    """An add to the cart and a checkout are each two round trips, not four or five: the login
    check, the upsert and place_orders() each run alone in autocommit, with no BEGIN before
    them and no COMMIT after. A request that goes on after the login check (a quantity change:
    a locked read, then an update) still runs the rest in one transaction."""
    assert app.config["LOGIN_CHECK_SECONDS"] == 0  # the login check is a query every time
    client = app.test_client()
    with app.app_context():
        username = UserFactory().username
        first, second = (ProductFactory(stock_quantity=10).id for _ in range(2))
    headers = bearer(login(client, username)["access_token"])
    first_add = client.post("/api/cart/items/", json={"product_id": first, "quantity": 1}, headers=headers)
    assert first_add.status_code == 201

    with _transaction_states(app) as add:
        added = client.post("/api/cart/items/", json={"product_id": second, "quantity": 1}, headers=headers)
    assert added.status_code == 201, added.get_json()
    with _transaction_states(app) as checkout:
        placed = client.post("/api/orders/", json={}, headers=headers)
    assert placed.status_code == 201, placed.get_json()
    assert [len(add), len(checkout)] == [ADD_TO_CART, CHECKOUT_WITHOUT_KEY], (add, checkout)
    assert all(status == TRANSACTION_STATUS_IDLE for _, status in add + checkout), (add, checkout)

    client.post("/api/cart/items/", json={"product_id": first, "quantity": 1}, headers=headers)
    line = client.get("/api/cart/", headers=headers).get_json()["items"][0]["id"]
    with _transaction_states(app) as change:
        changed = client.patch(f"/api/cart/items/{line}/", json={"quantity": 3}, headers=headers)
    assert changed.status_code == 200, changed.get_json()
    assert [status for _, status in change] == [TRANSACTION_STATUS_IDLE] + [TRANSACTION_STATUS_INTRANS] * (
        len(change) - 1
    ), change
    assert len(change) >= 3, change


@pytest.mark.usefixtures("committed")
def test_an_add_past_the_line_limit_commits_nothing_on_its_own(app):
    """The add commits by itself (autocommit): the line limit is the database's CHECK, so the
    refused add leaves the line as it was, with nothing to roll back."""
    client = app.test_client()
    with app.app_context():
        username = UserFactory().username
        product = ProductFactory(stock_quantity=50_000).id
    headers = bearer(login(client, username)["access_token"])
    body = {"product_id": product, "quantity": 6_000}
    assert client.post("/api/cart/items/", json=body, headers=headers).status_code == 201
    with capture_statements(app) as refused:
        over = client.post("/api/cart/items/", json=body, headers=headers)
    assert over.status_code == 422, over.get_json()
    assert over.get_json()["errors"] == {"quantity": ["A cart line holds at most 10000 units."]}
    assert len(refused) == ADD_TO_CART and refused[-1].startswith("WITH added AS"), refused
    items = client.get("/api/cart/", headers=headers).get_json()["items"]
    assert [item["quantity"] for item in items] == [6_000]
    # The limit itself is still reachable.
    body["quantity"] = 4_000
    assert client.post("/api/cart/items/", json=body, headers=headers).status_code == 200
    assert client.post("/api/cart/items/", json={**body, "quantity": 1}, headers=headers).status_code == 422
