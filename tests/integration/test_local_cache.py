"""The per-process copy of the catalog cache (ecommerce/core/local_cache.py) on the real Redis:
hits without a round trip, invalidation by Redis's own tracking messages, reads that race a
purge, a lost tracking connection, and coherence across two app instances."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest

from ecommerce.core.local_cache import CLIENT_NAME, RECONNECT_INTERVAL, LocalCache
from tests.conftest import bearer, login
from tests.factories import AdminFactory, ProductFactory

# Tracking is server-wide (not per database): a prefix of this run's own keeps another suite's
# writes on the same Redis from invalidating these keys.
PREFIX = f"local-cache-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def local(app):
    layer = LocalCache(app.config["REDIS_URL"], [PREFIX + "product:"], seconds=30, max_entries=100)
    yield layer
    layer.close()


class Loads:
    """A stand-in for the read of the shared cache: counts its calls, returns what it is given."""

    def __init__(self, value="v1") -> None:
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def wait_for_push() -> None:
    time.sleep(0.05)  # an invalidation travels over loopback in microseconds


def test_a_second_read_is_served_locally(local):
    load = Loads()
    assert local.get_or_load(PREFIX + "product:1", load) == "v1"
    assert local.get_or_load(PREFIX + "product:1", load) == "v1"
    assert load.calls == 1
    assert len(local) == 1


def test_a_miss_is_not_kept(local):
    load = Loads(value=None)
    assert local.get_or_load(PREFIX + "product:1", load) is None
    assert local.get_or_load(PREFIX + "product:1", load) is None
    assert load.calls == 2


def test_a_write_by_anyone_drops_the_copy(local, redis_client):
    # Redis signals a change to a key, not an attempt: a DEL of a missing key says nothing.
    redis_client.set(PREFIX + "product:1", "v1")
    load = Loads()
    local.get_or_load(PREFIX + "product:1", load)
    local.get_or_load(PREFIX + "product:2", load)
    redis_client.delete(PREFIX + "product:1")  # another process's purge
    wait_for_push()
    load.value = "v2"
    assert local.get_or_load(PREFIX + "product:1", load) == "v2"
    assert local.get_or_load(PREFIX + "product:2", load) == "v1", "an unrelated key was dropped"
    assert load.calls == 3


def test_keys_outside_the_prefixes_are_not_tracked(local, redis_client):
    load = Loads()
    local.get_or_load(PREFIX + "other:1", load)
    redis_client.set(PREFIX + "other:1", "changed")
    wait_for_push()
    # Only the prefixes asked for are tracked, so a change elsewhere never reaches the layer:
    # ecommerce/core/cache.py gives it tracked keys alone.
    assert local.get_or_load(PREFIX + "other:1", load) == "v1"


def test_a_flush_drops_everything(local, redis_client):
    load = Loads()
    local.get_or_load(PREFIX + "product:1", load)
    redis_client.flushdb()
    wait_for_push()
    local.get_or_load(PREFIX + "product:1", load)
    assert load.calls == 2


def test_expired_entries_are_read_again(app):
    layer = LocalCache(app.config["REDIS_URL"], [PREFIX + "product:"], seconds=0.1, max_entries=100)
    try:
        load = Loads()
        layer.get_or_load(PREFIX + "product:1", load)
        time.sleep(0.15)
        layer.get_or_load(PREFIX + "product:1", load)
        assert load.calls == 2
    finally:
        layer.close()


def test_the_least_recently_used_entry_goes_first(app):
    layer = LocalCache(app.config["REDIS_URL"], [PREFIX + "product:"], seconds=30, max_entries=2)
    try:
        load = Loads()
        for key in ("product:1", "product:2", "product:1", "product:3"):
            layer.get_or_load(PREFIX + key, load)
        assert load.calls == 3 and len(layer) == 2
        layer.get_or_load(PREFIX + "product:1", load)  # still there
        layer.get_or_load(PREFIX + "product:2", load)  # evicted
        assert load.calls == 4
    finally:
        layer.close()


def test_a_read_overtaken_by_a_purge_is_not_kept(local, redis_client):
    """The value was read from Redis just before a purge; the purge's message is consumed by
    another reader before this one finishes. Keeping the value would serve a stale copy until
    it expired."""
    key = PREFIX + "product:1"
    redis_client.set(key, "stale")

    def read_then_purge():
        redis_client.delete(key)  # the purge lands after "our" read of the shared cache
        wait_for_push()
        other = threading.Thread(target=lambda: local.get_or_load(PREFIX + "product:2", Loads()))
        other.start()  # drains the invalidation of product:1 while this read is in flight
        other.join()
        return "stale"

    assert local.get_or_load(key, read_then_purge) == "stale"  # answered, but not kept
    load = Loads("fresh")
    assert local.get_or_load(key, load) == "fresh"
    assert load.calls == 1


def _tracking_client_ids(redis_client) -> list[int]:
    return [int(client["id"]) for client in redis_client.client_list() if client.get("name") == CLIENT_NAME]


def test_a_lost_tracking_connection_turns_the_layer_off_until_it_is_back(local, redis_client):
    load = Loads()
    local.get_or_load(PREFIX + "product:1", load)
    before = _tracking_client_ids(redis_client)
    assert before, "the tracking connection is not named in CLIENT LIST"
    for client_id in before:
        redis_client.client_kill_filter(_id=client_id)
    wait_for_push()
    # Invalidations sent while it was down would be lost: nothing local is trusted any more.
    assert local.get_or_load(PREFIX + "product:1", load) == "v1"
    assert load.calls == 2
    assert local.get_or_load(PREFIX + "product:1", load) == "v1"
    assert load.calls == 3, "served locally with no tracking connection"
    time.sleep(RECONNECT_INTERVAL + 0.1)
    local.get_or_load(PREFIX + "product:1", load)
    local.get_or_load(PREFIX + "product:1", load)
    assert load.calls == 4, "the layer did not come back after reconnecting"
    assert _tracking_client_ids(redis_client)


def test_a_tracking_connection_that_cannot_be_made_leaves_reads_to_redis():
    layer = LocalCache("redis://127.0.0.1:1", [PREFIX], seconds=30, max_entries=10)
    load = Loads()
    assert layer.get_or_load(PREFIX + "product:1", load) == "v1"
    assert layer.get_or_load(PREFIX + "product:1", load) == "v1"
    assert load.calls == 2


def test_every_write_is_seen_by_the_next_read_on_another_instance(make_instance):
    """Instance A serves its reads from its local copy; each PATCH on B is visible on A's very
    next read, forty times over."""
    a, b = make_instance(), make_instance()
    assert "local_cache" in a.extensions and "local_cache" in b.extensions
    with a.app_context():
        AdminFactory(username="boss")
        product_id = ProductFactory(price=Decimal("10.00")).id
    admin = bearer(login(b.test_client(), "boss")["access_token"])
    reader, writer = a.test_client(), b.test_client()
    url = f"/api/products/{product_id}/"
    local = a.extensions["local_cache"]
    for step in range(40):
        for _ in range(3):  # warm: the second and third reads are local hits
            assert reader.get(url).status_code == 200
        assert any(key.endswith(f"product:{product_id}") for key in local._entries), "not cached locally"
        price = f"{11 + step}.00"
        assert writer.patch(url, json={"price": price}, headers=admin).status_code == 200
        assert reader.get(url).get_json()["price"] == price, f"step {step}: a stale local copy"
    lists = reader.get("/api/products/?sort=price")
    assert lists.status_code == 200
    assert reader.get("/api/products/?sort=price").get_json() == lists.get_json()
    assert writer.patch(url, json={"price": "0.50"}, headers=admin).status_code == 200
    assert reader.get("/api/products/?sort=price").get_json()[0]["price"] == "0.50"
