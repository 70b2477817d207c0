"""Live events (Server-Sent Events): order and stock streams, after commit only, across instances.

Every app here is its own instance (``make_instance``: own engine, own hub, own Redis
subscription), with a short heartbeat so that idle streams write (and readers wake) often.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from sqlalchemy import update

from ecommerce.extensions import db
from ecommerce.orders.models import Order
from ecommerce.payments.gateway import ChargeResult
from ecommerce.payments.services import process_payment, record_payment_result
from ecommerce.products.models import Product
from tests.factories import AdminFactory, ProductFactory, UserFactory
from tests.helpers import EventReader, assert_problem, bearer, login

FAST = {"EVENTS_HEARTBEAT_SECONDS": 0.2, "EVENTS_STOCK_INTERVAL_SECONDS": 0.5}


@pytest.fixture
def shop(make_instance):
    """Two instances, a product with 10 in stock, a customer and an admin (logged in)."""
    a, b = make_instance(**FAST), make_instance(**FAST)
    with a.app_context():
        product = ProductFactory(stock_quantity=10, price=Decimal("5.00"))
        UserFactory(username="carol")
        AdminFactory(username="root")
        db.session.commit()
        product_id = product.id
    client = a.test_client()
    return {
        "a": a,
        "b": b,
        "product_id": product_id,
        "carol": bearer(login(client, "carol")["access_token"]),
        "root": bearer(login(client, "root")["access_token"]),
    }


def open_stream(app, path: str, headers: dict | None = None) -> tuple[object, EventReader]:
    response = app.test_client().get(path, headers=headers or {}, buffered=False)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"].startswith("no-cache")
    assert response.headers["X-Accel-Buffering"] == "no"
    return response, EventReader(response.response)


def place_order(app, headers, product_id: int, quantity: int = 1) -> dict:
    client = app.test_client()
    assert (
        client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": quantity}, headers=headers
        ).status_code
        == 201
    )
    placed = client.post("/api/orders/", headers=headers)
    assert placed.status_code == 201, placed.get_json()
    return placed.get_json()


def set_stock(app, headers, product_id: int, stock: int) -> None:
    changed = app.test_client().patch(
        f"/api/products/{product_id}/", json={"stock_quantity": stock}, headers=headers
    )
    assert changed.status_code == 200, changed.get_json()


def test_product_stream_starts_with_the_stock_then_follows_a_change_on_another_instance(shop):
    a, b, pid = shop["a"], shop["b"], shop["product_id"]
    _, reader = open_stream(a, f"/api/products/{pid}/events/")
    try:
        first = reader.next()
        assert first == {"event": "stock", "data": {"product_id": pid, "stock_quantity": 10}}
        set_stock(b, shop["root"], pid, 7)  # on the other instance: through Redis
        assert reader.next()["data"] == {"product_id": pid, "stock_quantity": 7}
        place_order(b, shop["carol"], pid, 2)  # a checkout moves it too
        assert reader.next()["data"]["stock_quantity"] == 5
    finally:
        reader.close()


def test_stock_events_are_coalesced_and_the_last_change_is_never_held_back(shop):
    a, pid = shop["a"], shop["product_id"]
    _, reader = open_stream(a, f"/api/products/{pid}/events/")
    try:
        assert reader.next()["data"]["stock_quantity"] == 10
        started = time.monotonic()
        for stock in (9, 8, 7, 6, 5, 4):
            set_stock(a, shop["root"], pid, stock)
        seen, times = [], []
        while (event := reader.next(timeout=2.0)) is not None:
            seen.append(event["data"]["stock_quantity"])
            times.append(reader.last_at - started)  # when it arrived, not when it was read
        assert seen and seen[-1] == 4
        assert len(seen) < 6  # six changes, fewer events
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert all(gap >= 0.45 for gap in gaps), times  # at most one per interval (0.5 s)
    finally:
        reader.close()


def test_order_stream_shows_the_state_then_the_payment_and_status_moves_live(shop):
    a, b, pid = shop["a"], shop["b"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    _, reader = open_stream(a, f"/api/orders/{order['id']}/events/", shop["carol"])
    try:
        first = reader.next()
        assert first["event"] == "order"
        assert first["data"]["order_id"] == order["id"]
        assert (first["data"]["order_status"], first["data"]["payment_status"]) == ("pending", None)
        assert first["data"]["at"].endswith("Z")

        paying = b.test_client().post(
            f"/api/orders/{order['id']}/payments/",
            json={"payment_method": "card", "token": "tok_ok"},
            headers=shop["carol"],
        )
        assert paying.status_code == 202
        asked = reader.next()
        assert (asked["data"]["order_status"], asked["data"]["payment_status"]) == ("pending", "pending")
        assert asked["id"] > first["id"]

        with b.app_context():  # what the job worker does, on the other instance
            record_payment_result(paying.get_json()["id"], ChargeResult(approved=True, transaction_id="tx-1"))
        paid = reader.next()
        assert (paid["data"]["order_status"], paid["data"]["payment_status"]) == ("paid", "succeeded")
        assert paid["id"] > asked["id"]

        shipped = b.test_client().patch(
            f"/api/orders/{order['id']}/", json={"order_status": "shipped"}, headers=shop["root"]
        )
        assert shipped.status_code == 200
        assert reader.next()["data"]["order_status"] == "shipped"
    finally:
        reader.close()


def test_last_event_id_replays_what_came_after_it_then_goes_live(shop):
    a, pid = shop["a"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    _, reader = open_stream(a, f"/api/orders/{order['id']}/events/", shop["carol"])
    placed = reader.next()
    reader.close()
    cancelled = a.test_client().post(f"/api/orders/{order['id']}/cancel/", headers=shop["carol"])
    assert cancelled.status_code == 200

    _, again = open_stream(
        a, f"/api/orders/{order['id']}/events/", {**shop["carol"], "Last-Event-ID": str(placed["id"])}
    )
    try:
        replayed = again.next()
        assert replayed["data"]["order_status"] == "cancelled" and replayed["id"] > placed["id"]
        assert again.next(timeout=0.6) is None  # nothing else happened
    finally:
        again.close()

    # A Last-Event-ID of the latest event replays nothing: the stream waits for what comes next.
    _, latest = open_stream(
        a, f"/api/orders/{order['id']}/events/", {**shop["carol"], "Last-Event-ID": str(replayed["id"])}
    )
    try:
        assert latest.next(timeout=0.6) is None
    finally:
        latest.close()


def test_errors_before_the_stream_are_problems(shop):
    a, pid = shop["a"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    client = a.test_client()
    assert_problem(client.get(f"/api/orders/{order['id']}/events/"), 401)
    with a.app_context():
        UserFactory(username="mallory")
        db.session.commit()
    mallory = bearer(login(client, "mallory")["access_token"])
    assert_problem(client.get(f"/api/orders/{order['id']}/events/", headers=mallory), 404)
    assert_problem(client.get("/api/orders/999999/events/", headers=shop["carol"]), 404)
    assert_problem(client.get("/api/products/999999/events/"), 404)
    bad = client.get(
        f"/api/orders/{order['id']}/events/", headers={**shop["carol"], "Last-Event-ID": "yesterday"}
    )
    assert "Last-Event-ID" in assert_problem(bad, 422)["errors"]
    # The admin sees any order's stream.
    _, reader = open_stream(a, f"/api/orders/{order['id']}/events/", shop["root"])
    try:
        assert reader.next()["data"]["order_id"] == order["id"]
    finally:
        reader.close()


def _channel_listener(app) -> redis.client.PubSub:
    """A subscriber of the events channel of its own, confirmed before it is returned."""
    listener = redis.Redis.from_url(app.config["REDIS_URL"]).pubsub()
    listener.subscribe(app.config["EVENTS_CHANNEL"])
    confirmed = listener.get_message(timeout=5.0)
    assert confirmed is not None and confirmed["type"] == "subscribe", confirmed
    return listener


def test_a_rolled_back_change_publishes_nothing(shop):
    a, pid = shop["a"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    _, stock = open_stream(a, f"/api/products/{pid}/events/")
    _, orders = open_stream(a, f"/api/orders/{order['id']}/events/", shop["carol"])
    listener = _channel_listener(a)
    try:
        assert stock.next()["data"]["stock_quantity"] == 9
        assert orders.next()["data"]["order_status"] == "pending"
        with shop["b"].app_context():
            from ecommerce.core.events import notify_after_commit

            db.session.execute(update(Product).where(Product.id == pid).values(stock_quantity=0))
            db.session.execute(update(Order).where(Order.id == order["id"]).values(order_status="cancelled"))
            notify_after_commit(db.session, "product", pid)
            notify_after_commit(db.session, "order", order["id"])
            db.session.rollback()
        # Nothing went out on the channel (the streams would re-read the same committed state
        # and stay quiet even if it had: the channel is what shows the notices were dropped).
        assert listener.get_message(timeout=1.0) is None
        assert stock.next(timeout=0.5) is None
        assert orders.next(timeout=0.5) is None
        set_stock(a, shop["root"], pid, 3)  # and a committed one still comes through
        published = listener.get_message(timeout=5.0)
        assert published is not None and published["data"] == f"product:{pid}".encode(), published
        assert stock.next()["data"]["stock_quantity"] == 3
    finally:
        listener.close()
        stock.close()
        orders.close()


def test_a_stock_change_whose_notice_was_lost_arrives_on_the_heartbeat(shop):
    """A commit whose notice never went out (Redis gone between the commit and the publish):
    the stock stream reads the product again on its heartbeat, so it is late, not wrong."""
    a, pid = shop["a"], shop["product_id"]
    _, reader = open_stream(a, f"/api/products/{pid}/events/")
    try:
        assert reader.next()["data"]["stock_quantity"] == 10
        with shop["b"].app_context():
            db.session.execute(update(Product).where(Product.id == pid).values(stock_quantity=4))
            db.session.commit()  # no notify_after_commit: nothing is published
        # Heartbeat 0.2 s, then the shared read (at most one per 0.5 s interval).
        assert reader.next(timeout=3.0)["data"] == {"product_id": pid, "stock_quantity": 4}
        assert reader.next(timeout=1.0) is None  # unchanged since: no event, only comments
    finally:
        reader.close()


def test_an_order_stream_ends_when_its_access_token_expires(make_instance, shop):
    """The access check is made once, at the start: the stream ends when the token that opened
    it expires, so a revoked login stops hearing about its orders (the client reconnects with
    a fresh token)."""
    short = make_instance(**FAST, JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=2))
    order = place_order(shop["a"], shop["carol"], shop["product_id"])
    carol = bearer(login(short.test_client(), "carol")["access_token"])
    _, reader = open_stream(short, f"/api/orders/{order['id']}/events/", carol)
    try:
        assert reader.next()["data"]["order_status"] == "pending"
        assert reader.next(timeout=5.0) == {"closed": True}
    finally:
        reader.close()


def test_idle_streams_get_keep_alive_comments_and_hold_no_database_connection(shop):
    a, pid = shop["a"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    readers = [open_stream(a, f"/api/products/{pid}/events/")[1] for _ in range(3)]
    readers.append(open_stream(a, f"/api/orders/{order['id']}/events/", shop["carol"])[1])
    try:
        for reader in readers:
            assert reader.next() is not None  # the first event
            assert reader.next(timeout=2.0, comments=True) == {"comment": "keep-alive"}
        assert a.extensions["events"].open_streams() == 4
        with a.app_context():
            assert db.engine.pool.checkedout() == 0  # four open streams, no connection held
    finally:
        for reader in readers:
            reader.close()
    deadline = time.monotonic() + 5
    while a.extensions["events"].open_streams() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.extensions["events"].open_streams() == 0  # a closed stream leaves the hub


def test_a_worker_full_of_streams_answers_503_with_retry_after(make_instance, shop):
    small = make_instance(EVENTS_MAX_STREAMS=1, **FAST)
    pid = shop["product_id"]
    _, reader = open_stream(small, f"/api/products/{pid}/events/")
    try:
        refused = small.test_client().get(f"/api/products/{pid}/events/")
        assert_problem(refused, 503)
        assert refused.headers["Retry-After"] == "5"
    finally:
        reader.close()


def test_payment_processed_by_the_job_reaches_the_stream(shop):
    a, pid = shop["a"], shop["product_id"]
    order = place_order(a, shop["carol"], pid)
    paying = a.test_client().post(
        f"/api/orders/{order['id']}/payments/",
        json={"payment_method": "card", "token": "tok_decline_card"},
        headers=shop["carol"],
    )
    _, reader = open_stream(a, f"/api/orders/{order['id']}/events/", shop["carol"])
    try:
        assert reader.next()["data"]["payment_status"] == "pending"
        with shop["b"].app_context():
            process_payment(paying.get_json()["id"])  # the job's own code, the sandbox gateway
        failed = reader.next()
        assert (failed["data"]["order_status"], failed["data"]["payment_status"]) == ("pending", "failed")
    finally:
        reader.close()


@pytest.fixture
def embedded(app, build_app, tmp_path):
    """Two apps on one SQLite file and no Redis, as ``make run`` runs the web server and the job
    worker: the worker is another process, with a hub of its own that no stream reaches."""
    from flask_migrate import upgrade

    from ecommerce.tasks import configure_queue
    from tests.integration.test_embedded_checkout import MIGRATIONS

    settings = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
        "REDIS_URL": None,
        "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
        **FAST,
        "EVENTS_POLL_SECONDS": 0.2,
        # Longer than the wait below: the order stream's own re-read on a heartbeat cannot be
        # what delivers the worker's change; the hub's poll of the database must.
        "EVENTS_HEARTBEAT_SECONDS": 3.0,
    }
    web, worker = build_app(**settings), build_app(**settings)
    with web.app_context():
        upgrade(directory=MIGRATIONS)
        product = ProductFactory(stock_quantity=4)
        UserFactory(username="dora")
        AdminFactory(username="boss")
        db.session.commit()
        product_id = product.id
    yield web, worker, product_id
    configure_queue(app)


def test_embedded_default_streams_in_process_and_sees_the_workers_payments(embedded):
    web, worker, pid = embedded
    client = web.test_client()
    dora = bearer(login(client, "dora")["access_token"])
    boss = bearer(login(client, "boss")["access_token"])
    _, stock = open_stream(web, f"/api/products/{pid}/events/")
    order = place_order(web, dora, pid)
    paying = client.post(
        f"/api/orders/{order['id']}/payments/",
        json={"payment_method": "card", "token": "tok_ok"},
        headers=dora,
    )
    assert paying.status_code == 202
    _, orders = open_stream(web, f"/api/orders/{order['id']}/events/", dora)
    try:
        assert stock.next()["data"]["stock_quantity"] == 4
        assert stock.next()["data"]["stock_quantity"] == 3  # the checkout, in this process
        set_stock(web, boss, pid, 12)
        assert stock.next()["data"]["stock_quantity"] == 12
        assert orders.next()["data"]["payment_status"] == "pending"
        with worker.app_context():  # the worker process charges it: only the database tells
            record_payment_result(paying.get_json()["id"], ChargeResult(approved=True, transaction_id="tx-9"))
        paid = orders.next(timeout=1.0)
        assert (paid["data"]["order_status"], paid["data"]["payment_status"]) == ("paid", "succeeded")
    finally:
        stock.close()
        orders.close()
