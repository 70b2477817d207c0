"""What runs after a commit (ecommerce/core/db/after_commit.py) never turns a committed write into
an error answer: purges that find their key gone or race each other, a step that fails, and the
read-your-writes token read on the request's own connection when the pool has no other."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import redis
from prometheus_client import REGISTRY
from sqlalchemy import event, select

from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db import after_commit
from ecommerce.core.events import notify_after_commit
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderStatus
from ecommerce.products.models import Product
from tests.factories import AdminFactory, CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, login, run_concurrently


def _failures(step: str) -> float:
    return REGISTRY.get_sample_value("ecommerce_after_commit_failures_total", {"step": step}) or 0.0


def _shop(make_instance, **settings):
    app = make_instance(**settings)
    with app.app_context():
        AdminFactory(username="boss")
        product_id = ProductFactory(category_id=CategoryFactory().id, price=Decimal("10.00")).id
    client = app.test_client()
    return app, client, bearer(login(client, "boss")["access_token"]), product_id


def test_a_purge_whose_key_is_already_gone_answers_the_committed_write(make_instance, redis_client):
    app, client, admin, product_id = _shop(make_instance)
    url = f"/api/products/{product_id}/"
    key = app.config["CACHE_KEY_PREFIX"] + f"product:{product_id}"
    assert client.get(url).status_code == 200 and redis_client.exists(key)
    redis_client.delete(key)  # another purge won the race
    before = _failures("cache_purge")

    patched = client.patch(url, json={"price": "11.00"}, headers=admin)

    assert patched.status_code == 200, patched.get_json()
    assert client.get(url).get_json()["price"] == "11.00"
    assert _failures("cache_purge") == before


def test_racing_purges_and_refills_never_fail_a_write(make_instance):
    """Writers on two instances purge the same product while readers refill it between their
    deletes: every write answers 200, and the last one is what every instance reads."""
    app, client, admin, product_id = _shop(make_instance)
    other = make_instance().test_client()
    url = f"/api/products/{product_id}/"
    stop = threading.Event()
    read_statuses: list[int] = []

    def read(reader) -> None:
        while not stop.is_set():
            read_statuses.append(reader.get(url).status_code)

    readers = [threading.Thread(target=read, args=(make_instance().test_client(),)) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        writes = run_concurrently(
            [
                (
                    lambda n=n: (client if n % 2 else other).patch(
                        url, json={"stock_quantity": n}, headers=admin
                    )
                )
                for n in range(1, 13)
            ]
        )
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert [response.status_code for response in writes] == [200] * 12
    assert read_statuses and set(read_statuses) == {200}
    with app.app_context():
        stored = db.session.scalar(select(Product.stock_quantity).where(Product.id == product_id))
    assert client.get(url).get_json()["stock_quantity"] == stored
    assert other.get(url).get_json()["stock_quantity"] == stored


def test_a_failing_step_is_logged_and_counted_and_the_next_steps_still_run(
    make_instance, redis_client, monkeypatch, capfd
):
    """A fault injected before the purge: the write answers 200 with what was committed, the
    failure is logged and counted, and the purge after it still runs."""
    app, client, admin, product_id = _shop(make_instance)
    url = f"/api/products/{product_id}/"
    key = app.config["CACHE_KEY_PREFIX"] + f"product:{product_id}"
    assert client.get(url).status_code == 200 and redis_client.exists(key)

    def fail(_session) -> None:
        raise RuntimeError("injected fault")

    faulty = after_commit.Step("injected", fail, lambda _session: None)
    monkeypatch.setattr(after_commit, "STEPS", (faulty, *after_commit.STEPS))
    before = _failures("injected")

    patched = client.patch(url, json={"price": "12.00"}, headers=admin)

    assert patched.status_code == 200 and patched.get_json()["price"] == "12.00"
    assert _failures("injected") == before + 1
    assert "after-commit step injected failed" in capfd.readouterr().err
    assert not redis_client.exists(key), "the purge after the failed step did not run"
    assert client.get(url).get_json()["price"] == "12.00"


def _monitored(redis_client, call) -> list[dict]:
    """The commands Redis ran while ``call`` ran, each with the client that sent it (MONITOR)."""
    seen: list[dict] = []
    with redis_client.monitor() as monitor:
        started = threading.Event()

        def listen() -> None:
            started.set()
            while True:
                command = monitor.next_command()
                if command["command"] == "ECHO monitor-end":
                    return
                seen.append(command)

        listener = threading.Thread(target=listen)
        listener.start()
        started.wait()
        time.sleep(0.2)  # MONITOR is on before the call's first command
        call()
        redis_client.echo("monitor-end")
        listener.join(10)
    return seen


def test_a_checkouts_purge_and_notices_share_one_round_trip(make_instance, redis_client):
    """A checkout owes a purge (the product's detail, the lists) and notices (the product's stock
    moved): on one Redis they go in one pipeline, on one connection, the purge first. The live
    streams still hear the notice, and the purged entry is gone."""
    app, client, admin, product_id = _shop(make_instance)
    with app.app_context():
        username = UserFactory().username
    buyer = bearer(login(client, username)["access_token"])
    key = app.config["CACHE_KEY_PREFIX"] + f"product:{product_id}"
    assert client.get(f"/api/products/{product_id}/").status_code == 200 and redis_client.exists(key)
    added = client.post("/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=buyer)
    assert added.status_code == 201
    listener = redis_client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(app.config["EVENTS_CHANNEL"])
    placed: list = []

    commands = _monitored(
        redis_client, lambda: placed.append(client.post("/api/orders/", json={}, headers=buyer))
    )

    assert placed[0].status_code == 201, placed[0].get_json()
    ours = redis_client.connection_pool.connection_kwargs.get("db", 0)  # MONITOR sees every database
    after = [
        c
        for c in commands
        if c["db"] == ours and c["command"].split()[0] in ("INCRBY", "DEL", "SET", "PUBLISH")
    ]
    assert [c["command"].split()[0] for c in after] == ["INCRBY", "DEL", "SET", "PUBLISH"], commands
    assert len({(c["client_address"], c["client_port"]) for c in after}) == 1, after
    assert not redis_client.exists(key)
    deadline = time.monotonic() + 5
    notice = None
    while notice is None and time.monotonic() < deadline:  # the subscription's own reply first
        notice = listener.get_message(timeout=1)
    assert notice is not None and notice["data"] == f"product:{product_id}".encode()
    listener.close()


def test_a_cache_set_apart_from_the_events_is_purged_in_its_own_round_trip(make_instance, redis_client):
    """CACHE_REDIS_URL another Redis than REDIS_URL (here another database): no shared round
    trip; the purge goes to the cache's Redis by itself, and a write is purged as before."""
    kwargs = redis_client.connection_pool.connection_kwargs
    apart = f"redis://{kwargs['host']}:{kwargs['port']}/{(kwargs.get('db', 0) + 1) % 16}"
    cache = redis.Redis.from_url(apart)
    cache.flushdb()
    app, client, admin, product_id = _shop(make_instance, CACHE_REDIS_URL=apart)
    url = f"/api/products/{product_id}/"
    key = app.config["CACHE_KEY_PREFIX"] + f"product:{product_id}"
    assert client.get(url).status_code == 200 and cache.exists(key) and not redis_client.exists(key)

    patched = client.patch(url, json={"price": "13.00"}, headers=admin)

    assert patched.status_code == 200, patched.get_json()
    assert not cache.exists(key), "the purge did not reach the cache's Redis"
    assert client.get(url).get_json()["price"] == "13.00"
    cache.flushdb()


def test_a_failed_shared_round_trip_counts_only_the_steps_that_queued_in_it(build_app, capfd):
    """Redis unreachable: a commit that owes notices and no purge counts a failed
    ``event_publish``, not a failed ``cache_purge``; one that owes both counts both. The commit
    itself stands either way (the hook raises nothing)."""
    dead = "redis://127.0.0.1:9/15"  # the discard port: nothing listens there
    app = build_app(REDIS_URL=dead, CACHE_REDIS_URL=dead)
    with app.app_context():
        purge_before, publish_before = _failures("cache_purge"), _failures("event_publish")
        session = db.session
        notify_after_commit(session, "order", 1)
        after_commit._after_commit(session)
        assert (_failures("cache_purge"), _failures("event_publish")) == (purge_before, publish_before + 1)

        invalidate_product(session, 1)
        notify_after_commit(session, "product", 1)
        after_commit._after_commit(session)
        assert (_failures("cache_purge"), _failures("event_publish")) == (
            purge_before + 1,
            publish_before + 2,
        )
    assert "after-commit step event_publish failed" in capfd.readouterr().err


def test_read_your_writes_tokens_come_from_the_requests_own_connection(make_instance, redis_client):
    """One connection in the pool, and a replica configured (the test database itself): a
    cancel commits, then reads the order again on the pool's only connection. Its token is
    read on that connection; from a second one the request would wait DB_POOL_TIMEOUT and fail."""
    url = make_instance().config["SQLALCHEMY_DATABASE_URI"]
    app = make_instance(
        SQLALCHEMY_REPLICA_URI=url,
        DB_POOL_SIZE=1,
        DB_MAX_OVERFLOW=0,
        DB_POOL_TIMEOUT=3,
    )
    with app.app_context():
        user = UserFactory()
        user_id, username = user.id, user.username
        product_id = ProductFactory(category_id=CategoryFactory().id, stock_quantity=5).id
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    assert (
        client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers
        ).status_code
        == 201
    )
    order = client.post("/api/orders/", json={}, headers=headers)
    assert order.status_code == 201, order.get_json()
    user_token = f"ecommerce:lsn:user:{user_id}"
    redis_client.delete(user_token)

    started = time.monotonic()
    cancelled = client.post(f"/api/orders/{order.get_json()['id']}/cancel/", headers=headers)

    assert cancelled.status_code == 200, cancelled.get_json()
    assert time.monotonic() - started < 2, "the request waited for a second pooled connection"
    assert redis_client.get(user_token) is not None
    assert redis_client.get("ecommerce:lsn:catalog") is not None  # the stock went back
    with app.app_context():
        status = db.session.scalar(select(Order.order_status).where(Order.user_id == user_id))
    assert status == OrderStatus.CANCELLED


def _routed(target: str, reason: str) -> float:
    labels = {"target": target, "reason": reason}
    return REGISTRY.get_sample_value("ecommerce_db_routed_reads_total", labels) or 0.0


def test_a_read_pool_connection_to_a_primary_serves_the_read_and_is_replaced(make_instance, redis_client):
    """DATABASE_REPLICA_URL reaching a primary (prefer-standby found no standby when it connected,
    or its standby was promoted since): the read is served there, counted as a primary read, and
    the connection is replaced at its next checkout, so that a standby that answers by then gets
    the reads again; at most once a second, so a URL with no standby behind it does not open a
    connection per read."""
    url = make_instance().config["SQLALCHEMY_DATABASE_URI"]
    app = make_instance(SQLALCHEMY_REPLICA_URI=url)
    with app.app_context():
        product_id = ProductFactory(category_id=CategoryFactory().id).id
        engine = db.engines["replica"]
    pids: list[int] = []

    def checked_out(dbapi_connection, _record, _proxy) -> None:
        pids.append(dbapi_connection.info.backend_pid)

    event.listen(engine, "checkout", checked_out)
    client = app.test_client()
    try:
        before = _routed("primary", "read_pool_on_primary")
        standby_reads = _routed("replica", "caught_up")
        time.sleep(1.05)  # past the once-a-second bound another test's replacement may have set
        assert client.get(f"/api/products/{product_id}/reviews/").status_code == 200
        assert client.get(f"/api/products/{product_id}/reviews/").status_code == 200
        time.sleep(1.05)
        assert client.get(f"/api/products/{product_id}/reviews/").status_code == 200
    finally:
        event.remove(engine, "checkout", checked_out)
    assert _routed("primary", "read_pool_on_primary") == before + 3
    assert _routed("replica", "caught_up") == standby_reads, "a primary's read counted as a standby's"
    assert len(pids) == 3
    assert pids[1] != pids[0], "the connection on the primary was not replaced"
    assert pids[2] == pids[1], "replaced twice within a second"
