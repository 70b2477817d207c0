"""GET and HEAD requests run their statements in autocommit (no BEGIN, no ROLLBACK round trips,
ecommerce/core/db/replicas.py ``autocommit_for_reads``); other methods run a statement that is a
whole transaction by itself alone in autocommit too (ecommerce/core/db/autocommit.py), and the
rest in a transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from ecommerce.extensions import db
from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, login


@pytest.fixture
def autocommit_seen(app):
    """For each statement the app sends: was its psycopg2 connection in autocommit?"""
    seen: list[tuple[str, bool]] = []

    def record(conn, _cursor, statement, *_args) -> None:
        seen.append((statement.split()[0].upper(), conn.connection.dbapi_connection.autocommit))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


@pytest.mark.usefixtures("committed")
def test_reads_run_in_autocommit_and_writes_in_a_transaction(app, autocommit_seen):
    with app.app_context():
        username = UserFactory().username
        product_id = ProductFactory(stock_quantity=5).id
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    autocommit_seen.clear()

    assert client.get("/api/orders/", headers=headers).status_code == 200
    assert client.get("/api/cart/", headers=headers).status_code == 200  # made on first use
    reads = list(autocommit_seen)
    assert reads and all(autocommit for _verb, autocommit in reads), reads
    assert any(verb == "INSERT" for verb, _ in reads), "the first GET of the cart made it"

    autocommit_seen.clear()
    added = client.post("/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers)
    assert added.status_code in (200, 201), added.get_json()
    assert client.post("/api/orders/", json={}, headers=headers).status_code == 201
    writes = list(autocommit_seen)
    # Each statement here is a whole transaction by itself, sent alone in autocommit: the add's
    # login check and upsert, the checkout's login check and its call of place_orders().
    assert writes == [("SELECT", True), ("WITH", True), ("SELECT", True), ("SELECT", True)], writes

    autocommit_seen.clear()
    line = client.get("/api/cart/", headers=headers)
    assert line.status_code == 200
    autocommit_seen.clear()
    added = client.post("/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers)
    item = added.get_json()["id"]
    autocommit_seen.clear()
    assert client.patch(f"/api/cart/items/{item}/", json={"quantity": 2}, headers=headers).status_code == 200
    # A request of several statements: the login check alone, the rest in one transaction.
    changed = list(autocommit_seen)
    assert len(changed) >= 3 and changed[0] == ("SELECT", True), changed
    assert not any(autocommit for _verb, autocommit in changed[1:]), changed
    # The cart the GET made is the one the order came from, and the line changed is the new one.
    assert [i["quantity"] for i in client.get("/api/cart/", headers=headers).get_json()["items"]] == [2]


@pytest.mark.usefixtures("committed")
def test_reads_in_autocommit_can_be_turned_off(build_app):
    instance = build_app(READS_IN_AUTOCOMMIT=False)
    with instance.app_context():
        engine = db.engine
        username = UserFactory().username
    seen: list[bool] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda conn, *_: seen.append(conn.connection.dbapi_connection.autocommit),
    )
    client = instance.test_client()
    headers = bearer(login(client, username)["access_token"])
    seen.clear()
    assert client.get("/api/orders/", headers=headers).status_code == 200
    assert seen and not any(seen), seen


@pytest.mark.usefixtures("committed")
def test_a_pinged_connection_serves_reads_and_writes_alike(build_app):
    """Every checkout pinged (DB_PING_IDLE_SECONDS=0): the ping must leave no transaction open,
    or a read could not switch to autocommit and a write would run inside the ping's."""
    from prometheus_client import REGISTRY

    instance = build_app(DB_PING_IDLE_SECONDS=0)
    with instance.app_context():
        username = UserFactory().username
        product_id = ProductFactory(stock_quantity=5).id
    alive = REGISTRY.get_sample_value("ecommerce_db_idle_pings_total", {"outcome": "alive"}) or 0.0
    client = instance.test_client()
    headers = bearer(login(client, username)["access_token"])
    for _ in range(3):
        assert client.get("/api/cart/", headers=headers).status_code == 200
        added = client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers
        )
        assert added.status_code in (200, 201), added.get_json()
    assert client.get("/api/cart/", headers=headers).get_json()["items"][0]["quantity"] == 3
    assert (REGISTRY.get_sample_value("ecommerce_db_idle_pings_total", {"outcome": "alive"}) or 0.0) > alive
