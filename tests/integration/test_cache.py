"""The Redis catalog cache across two app instances: purges, stampede control, a dead Redis.

Instance A reads (and so caches), instance B writes; A's very next read must show the write.
Both are full ``create_app`` objects with their own engines, sharing PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import event

from ecommerce.extensions import db
from ecommerce.products.models import Product
from tests.factories import AdminFactory, CategoryFactory, ProductFactory, UserFactory
from tests.helpers import assert_pagination, bearer, capture_statements, login, run_concurrently


@pytest.fixture
def instances(make_instance):
    """Instance A, instance B, and an admin's headers (logged in on B)."""
    a, b = make_instance(), make_instance()
    with a.app_context():
        AdminFactory(username="boss")
    admin = bearer(login(b.test_client(), "boss")["access_token"])
    return a, b, admin


def product_cache_key(app, product_id: int) -> str:
    return app.config["CACHE_KEY_PREFIX"] + f"product:{product_id}"


def list_ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()]


def test_product_detail_write_on_b_is_read_on_a(instances, redis_client):
    a, b, admin = instances
    with a.app_context():
        product_id = ProductFactory(price=Decimal("10.00")).id
    reader, writer = a.test_client(), b.test_client()
    url = f"/api/products/{product_id}/"
    key = product_cache_key(a, product_id)
    assert not redis_client.exists(key)

    first = reader.get(url)
    assert first.status_code == 200 and first.get_json()["price"] == "10.00"
    etag = first.headers["ETag"]
    assert redis_client.exists(key), "the detail read did not land in Redis"
    assert reader.get(url, headers={"If-None-Match": etag}).status_code == 304

    patched = writer.patch(url, json={"price": "12.50"}, headers=admin)
    assert patched.status_code == 200 and patched.get_json()["price"] == "12.50"
    assert not redis_client.exists(key), "the write did not purge the cached detail"

    after = reader.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.get_json()["price"] == "12.50"
    assert after.headers["ETag"] != etag


def test_a_read_that_began_before_a_write_never_caches_the_old_copy(instances, redis_client):
    """A reads the product from the database, B commits a change and purges, then A stores:
    without the generation guard A's stale copy would be served by every instance."""
    a, b, admin = instances
    with a.app_context():
        product_id = ProductFactory(price=Decimal("10.00")).id
        engine = db.engine
    url = f"/api/products/{product_id}/"
    read_done, write_done = threading.Event(), threading.Event()

    def hold_after_the_read(conn, cursor, statement, parameters, context, executemany):
        if "FROM products" in statement and not read_done.is_set():
            read_done.set()  # A has the old row in hand ...
            assert write_done.wait(10)  # ... and stores it only after B's write is done

    event.listen(engine, "after_cursor_execute", hold_after_the_read)
    try:
        result = {}
        reader = threading.Thread(target=lambda: result.update(stale=a.test_client().get(url)))
        reader.start()
        assert read_done.wait(10)
        patched = b.test_client().patch(url, json={"price": "12.50"}, headers=admin)
        assert patched.status_code == 200
        write_done.set()
        reader.join(10)
    finally:
        event.remove(engine, "after_cursor_execute", hold_after_the_read)

    # A's own answer began before the write: the old price is a fair answer for it ...
    assert result["stale"].get_json()["price"] == "10.00"
    # ... but it must not have been cached: the next read anywhere shows the write.
    assert not redis_client.exists(product_cache_key(a, product_id))
    assert a.test_client().get(url).get_json()["price"] == "12.50"
    assert b.test_client().get(url).get_json()["price"] == "12.50"


def test_product_list_write_on_b_is_read_on_a(instances, redis_client):
    a, b, admin = instances
    with a.app_context():
        category_id = CategoryFactory().id
        ids = [ProductFactory(category_id=category_id, name=f"Item {n}").id for n in range(3)]
    reader, writer = a.test_client(), b.test_client()
    url = f"/api/products/?category={category_id}&sort=name&page_size=10"

    first = reader.get(url)
    assert list_ids(first) == ids
    assert_pagination(first, total=3)
    prefix = a.config["CACHE_KEY_PREFIX"] + "products:list:"
    list_keys = [k for k in redis_client.scan_iter(prefix + "*") if not k.endswith(b":version")]
    assert list_keys, "the list page did not land in Redis"
    assert [p["name"] for p in reader.get(url).get_json()] == ["Item 0", "Item 1", "Item 2"]

    # B changes a product on the cached page.
    renamed = writer.patch(f"/api/products/{ids[1]}/", json={"name": "Item 9"}, headers=admin)
    assert renamed.status_code == 200
    assert [p["name"] for p in reader.get(url).get_json()] == ["Item 0", "Item 2", "Item 9"]

    # B creates a product that belongs on the cached page.
    body = {"name": "Item 5", "price": "3.00", "stock_quantity": 1, "category_id": category_id}
    created = writer.post("/api/products/", json=body, headers=admin)
    assert created.status_code == 201
    after = reader.get(url)
    assert [p["name"] for p in after.get_json()] == ["Item 0", "Item 2", "Item 5", "Item 9"]
    assert_pagination(after, total=4)

    # B deletes one: gone from A's next page too.
    assert writer.delete(f"/api/products/{ids[0]}/", headers=admin).status_code == 204
    assert [p["name"] for p in reader.get(url).get_json()] == ["Item 2", "Item 5", "Item 9"]


def test_category_moves_on_b_are_read_on_a(instances):
    a, b, admin = instances
    with a.app_context():
        first_id, second_id, third_id = (CategoryFactory().id for _ in range(3))
        product_id = ProductFactory(category_id=first_id).id
        nested_product_id = ProductFactory(category_id=third_id).id
    reader, writer = a.test_client(), b.test_client()

    def in_category(category_id: int) -> list[int]:
        return list_ids(reader.get(f"/api/products/?category={category_id}"))

    assert in_category(first_id) == [product_id]
    assert in_category(second_id) == []

    # A product moves to another category.
    moved = writer.patch(f"/api/products/{product_id}/", json={"category_id": second_id}, headers=admin)
    assert moved.status_code == 200
    assert in_category(first_id) == []
    assert in_category(second_id) == [product_id]

    # A category (with its product) moves under another: the filter includes sub-categories.
    assert in_category(first_id) == []
    reparented = writer.patch(f"/api/categories/{third_id}/", json={"parent_id": first_id}, headers=admin)
    assert reparented.status_code == 200, reparented.get_json()
    assert in_category(first_id) == [nested_product_id]


def test_review_on_b_moves_rating_read_on_a(instances):
    a, b, _ = instances
    with a.app_context():
        product_id = ProductFactory().id
        UserFactory(username="reviewer")
    reader, writer = a.test_client(), b.test_client()
    url = f"/api/products/{product_id}/"

    before = reader.get(url)
    assert before.get_json()["rating_count"] == 0
    etag = before.headers["ETag"]

    token = login(writer, "reviewer")["access_token"]
    posted = writer.post(f"{url}reviews/", json={"rating": 4, "comment": "Good"}, headers=bearer(token))
    assert posted.status_code == 201

    after = reader.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200
    assert after.get_json()["rating_count"] == 1
    assert after.get_json()["rating_avg"] == 4.0
    assert after.headers["ETag"] != etag


# -- stampede control ---------------------------------------------------------------------


def test_cold_product_is_read_from_the_database_once(make_instance, redis_client):
    a = make_instance()
    with a.app_context():
        product_id = ProductFactory().id
    assert not redis_client.exists(product_cache_key(a, product_id))
    url = f"/api/products/{product_id}/"

    def selects_this_product(sql, parameters):
        sql = sql.lower()
        return (
            sql.lstrip().startswith("select")
            and "from products" in sql
            and isinstance(parameters, dict)
            and product_id in parameters.values()
        )

    clients = [a.test_client() for _ in range(30)]
    with capture_statements(a, selects_this_product) as selects:
        responses = run_concurrently([lambda c=c: c.get(url) for c in clients])

    assert [r.status_code for r in responses] == [200] * 30
    assert len({r.headers["ETag"] for r in responses}) == 1
    assert len({r.data for r in responses}) == 1
    assert len(selects) == 1, selects


def test_cold_list_page_is_read_from_the_database_once(make_instance):
    a = make_instance()
    with a.app_context():
        category_id = CategoryFactory().id
        for n in range(8):
            ProductFactory(category_id=category_id, price=Decimal(f"{n + 1}.00"))
    url = f"/api/products/?category={category_id}&sort=price&page=2&page_size=3"

    def selects_products(sql, _parameters):
        # The category filter is a recursive CTE, so these statements start with WITH.
        sql = sql.lower()
        return "select" in sql and "from products" in sql

    clients = [a.test_client() for _ in range(30)]
    with capture_statements(a, selects_products) as selects:
        responses = run_concurrently([lambda c=c: c.get(url) for c in clients])

    assert [r.status_code for r in responses] == [200] * 30
    assert [p["price"] for p in responses[0].get_json()] == ["4.00", "5.00", "6.00"]
    assert len({r.data for r in responses}) == 1
    assert len({r.headers["X-Pagination"] for r in responses}) == 1
    page_queries = [sql for sql in selects if "limit" in sql.lower()]
    count_queries = [sql for sql in selects if "count(" in sql.lower()]
    assert len(page_queries) == 1, selects
    assert len(count_queries) == 1, selects


# -- a dead Redis -------------------------------------------------------------------------
# Kept last in this module: the cache's circuit breaker is process-wide state, and a dead
# Redis opens it for a moment for every app in this process.


def test_dead_redis_serves_from_the_database(make_instance):
    a = make_instance()
    with a.app_context():
        AdminFactory(username="boss")
        category_id = CategoryFactory().id
        product_id = ProductFactory(category_id=category_id, price=Decimal("10.00")).id
        ProductFactory(category_id=category_id)
    # Log in before the dead instance exists: Flask-Limiter's storage follows the app bound last.
    admin = bearer(login(a.test_client(), "boss")["access_token"])

    dead = make_instance(REDIS_URL="redis://127.0.0.1:1/0")
    client = dead.test_client()
    url = f"/api/products/{product_id}/"

    detail = client.get(url)
    assert detail.status_code == 200 and detail.get_json()["price"] == "10.00"
    assert "ETag" in detail.headers
    listing = client.get(f"/api/products/?category={category_id}")
    assert listing.status_code == 200 and len(listing.get_json()) == 2
    assert_pagination(listing, total=2)

    patched = client.patch(url, json={"price": "11.00"}, headers=admin)
    assert patched.status_code == 200, patched.get_json()
    assert client.get(url).get_json()["price"] == "11.00"
    with a.app_context():
        assert db.session.get(Product, product_id).price == Decimal("11.00")

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "application/problem+json"
    assert "Retry-After" in ready.headers
    body = ready.get_json()
    assert body["checks"] == {"database": "ok", "redis": "down"}


def test_every_category_write_is_in_the_cached_tree_at_once_on_another_instance(instances, redis_client):
    """The category list is cached (with the product lists' generation); a create, a rename, a
    move and a delete on B are each in A's very next read of the list."""
    a, b, admin = instances
    reader, writer = a.test_client(), b.test_client()

    def names() -> dict[int, tuple[str, int | None]]:
        response = reader.get("/api/categories/")
        assert response.status_code == 200, response.get_json()
        return {row["id"]: (row["name"], row["parent_id"]) for row in response.get_json()}

    assert names() == {}
    assert names() == {}  # a cached answer now
    assert any(b"categories" in key or b"products:list:" in key for key in redis_client.keys("*"))
    root = writer.post("/api/categories/", json={"name": "Shoes"}, headers=admin).get_json()["id"]
    assert names() == {root: ("Shoes", None)}
    child = writer.post("/api/categories/", json={"name": "Boots"}, headers=admin).get_json()["id"]
    assert names() == {root: ("Shoes", None), child: ("Boots", None)}
    assert (
        writer.patch(f"/api/categories/{child}/", json={"name": "Wellies"}, headers=admin).status_code == 200
    )
    assert names()[child] == ("Wellies", None)
    moved = writer.patch(f"/api/categories/{child}/", json={"parent_id": root}, headers=admin)
    assert moved.status_code == 200, moved.get_json()
    assert names()[child] == ("Wellies", root)
    assert writer.delete(f"/api/categories/{child}/", headers=admin).status_code == 204
    assert names() == {root: ("Shoes", None)}


def test_a_failed_fill_releases_its_lock_at_once(make_instance, redis_client):
    """A product that does not exist: the filler's 404 must not leave the lock behind, or every
    reader of that id would wait LOCK_WAIT_SECONDS for a value that never comes."""
    a = make_instance()
    lock = a.config["CACHE_KEY_PREFIX"] + "lock:product:999999"
    client = a.test_client()
    assert client.get("/api/products/999999/").status_code == 404
    assert not redis_client.exists(lock)
    assert not redis_client.exists(a.config["CACHE_KEY_PREFIX"] + "product:999999")


def test_a_filler_whose_lock_expired_leaves_the_new_holders_lock_alone(make_instance, redis_client):
    """A slow filler whose lock timed out and was taken by another stores its value (the
    generation is unchanged) but releases only a lock that is still its own."""
    from ecommerce.core.cache.store import _RedisFill, cache

    a = make_instance()
    prefix = a.config["CACHE_KEY_PREFIX"]
    with a.test_request_context("/"):
        fill = _RedisFill(a.extensions["catalog_cache_redis"], "product:424242", guard_writes=True)
        assert fill.get_or_lock() is None and fill.locked
        redis_client.set(prefix + "lock:product:424242", "another filler", ex=10)
        assert fill.compute(lambda: "value", 60) == "value"
        assert redis_client.get(prefix + "lock:product:424242") == b"another filler"
        assert cache.get("product:424242") == "value"
        # A second filler now finds the value in one round trip and takes no lock.
        second = _RedisFill(a.extensions["catalog_cache_redis"], "product:424242", guard_writes=True)
        assert second.get_or_lock() == "value" and not second.locked


def test_entries_are_pickled_under_the_name_every_release_reads(make_instance, redis_client):
    """Workers of the previous release (a rolling restart) and of the next one read the same
    entries: the class of a cached body keeps the import path it was first stored under."""
    a = make_instance()
    with a.app_context():
        product_id = ProductFactory().id
    assert a.test_client().get(f"/api/products/{product_id}/").status_code == 200
    stored = redis_client.get(product_cache_key(a, product_id))
    assert stored.startswith(b"!")  # cachelib's mark of a pickled value
    assert b"ecommerce.core.cache" in stored and b"CachedJSON" in stored
    assert b"ecommerce.core.cache.store" not in stored


def test_an_entry_this_release_cannot_read_is_a_miss_and_is_replaced(make_instance, redis_client):
    """An entry pickled from a class this code does not have answers 200 from the database, and
    the fill stores one it can read."""
    a = make_instance()
    with a.app_context():
        product_id = ProductFactory(price=Decimal("7.00")).id
    key = product_cache_key(a, product_id)
    # A pickle naming a module that does not exist (protocol 0: GLOBAL 'module name').
    redis_client.set(key, b"!cno_such_release.cache\nCachedJSON\n.")
    client = a.test_client()

    response = client.get(f"/api/products/{product_id}/")

    assert response.status_code == 200 and response.get_json()["price"] == "7.00"
    assert b"no_such_release" not in redis_client.get(key)
    assert client.get(f"/api/products/{product_id}/").get_json()["price"] == "7.00"
