"""The per-process copy of the catalog cache (ecommerce/core/cache/local.py) on the real Redis:
hits without a round trip, invalidation by Redis's own tracking messages (in bursts, and longer
than one read of the socket), reads that race a purge, a lost tracking connection, a forked
worker, gevent, TLS, and coherence across two app instances."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from ecommerce.core.cache.local import CLIENT_NAME, RECONNECT_INTERVAL, LocalCache
from tests.factories import AdminFactory, ProductFactory
from tests.helpers import bearer, login

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
    # ecommerce/core/cache/store.py gives it tracked keys alone.
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


def test_a_purge_that_arrives_while_the_read_is_in_flight_is_honoured(local, redis_client):
    """No other reader this time: the read itself finds the purge's message when it ends."""
    key = PREFIX + "product:1"
    redis_client.set(key, "stale")

    def read_then_purge():
        redis_client.delete(key)
        wait_for_push()
        return "stale"

    assert local.get_or_load(key, read_then_purge) == "stale"
    assert len(local) == 0
    load = Loads("fresh")
    assert local.get_or_load(key, load) == "fresh"
    assert local.get_or_load(key, load) == "fresh"
    assert load.calls == 1


def test_a_burst_of_invalidations_is_applied_in_full(local, redis_client):
    """Many messages arrive in one read of the socket; every one of them is applied, not just
    the first (the socket is then empty, the rest waits in the reader's buffer)."""
    keys = [f"{PREFIX}product:{number}" for number in range(90)]  # all within max_entries
    for key in keys:
        local.get_or_load(key, Loads())
    for key in keys:  # one by one: Redis gathers a BCAST pass's keys into a single message
        redis_client.set(key, "v2")
    wait_for_push()
    load = Loads("v2")
    assert all(local.get_or_load(key, load) == "v2" for key in keys)
    assert load.calls == len(keys)


@pytest.mark.parametrize("length", [200_000, 8_000_000])
def test_an_invalidation_longer_than_one_read_of_the_socket(local, redis_client, length):
    """The message spans several reads of the socket. A long one is not even whole when the
    write's reply comes (Redis cannot put it all into the socket at once): the layer stands aside
    until it is, rather than serve what it may name."""
    key = PREFIX + "product:" + "x" * length
    load = Loads()
    local.get_or_load(key, load)
    local.get_or_load(PREFIX + "product:2", load)
    redis_client.set(key, "v2")  # no wait: the next read comes right after the reply
    load.value = "v2"
    assert local.get_or_load(key, load) == "v2"
    redis_client.set(PREFIX + "product:2", "v2")
    wait_for_push()
    assert local.get_or_load(PREFIX + "product:2", load) == "v2"
    # The rest is read as look-ups come (Redis sends more as the socket empties), then the key
    # is served locally again.
    deadline = time.monotonic() + 5
    while True:
        calls = load.calls
        assert local.get_or_load(key, load) == "v2"
        if load.calls == calls:
            break
        assert time.monotonic() < deadline, "the layer did not come back once the message was whole"
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_a_forked_worker_opens_its_own_tracking_connection(local, redis_client):
    key = PREFIX + "product:1"
    redis_client.set(key, "v1")
    load = Loads()
    local.get_or_load(key, load)
    parent_ids = _tracking_client_ids(redis_client)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            child_load = Loads("child")
            first = local.get_or_load(key, child_load)  # nothing inherited is trusted
            second = local.get_or_load(key, child_load)  # its own connection serves it
            own = local._connection is not None and local._connection.pid == os.getpid()
            if (first, second, child_load.calls, own) == ("child", "child", 1, True):
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection lives on, and still delivers invalidations.
    assert set(parent_ids) <= set(_tracking_client_ids(redis_client))
    assert local.get_or_load(key, load) == "v1" and load.calls == 1
    redis_client.delete(key)
    wait_for_push()
    assert local.get_or_load(key, load) == "v1" and load.calls == 2


GEVENT_WORKER = """
import sys, time
import redis
from ecommerce.core.cache.local import LocalCache

url, key = sys.argv[1], sys.argv[2]
writer = redis.Redis.from_url(url)
layer = LocalCache(url, [key], seconds=30, max_entries=10)
loads = []
def load():
    loads.append(1)
    return writer.get(key)
writer.set(key, "v1")
assert layer.get_or_load(key, load) == layer.get_or_load(key, load) == b"v1" and len(loads) == 1
writer.set(key, "v2")
assert layer.get_or_load(key, load) == b"v2" and len(loads) == 2
"""


def test_under_gevent_every_write_is_seen_by_the_next_read(app, tmp_path):
    """A gunicorn worker runs with gevent's monkey-patched sockets."""
    script = tmp_path / "worker.py"
    script.write_text(GEVENT_WORKER)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "gevent.monkey", str(script), app.config["REDIS_URL"], PREFIX + "product:g"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tls_redis(tmp_path):
    """A Redis of this test's own on TLS, with a user and password: the URL for it."""
    if not (shutil.which("redis-server") and shutil.which("openssl")):
        pytest.skip("needs redis-server and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    config = tmp_path / "redis.conf"
    config.write_text(
        f"port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {cert}\n"
        f'tls-auth-clients no\nsave ""\nappendonly no\ndir {tmp_path}\n'
        "user default off\nuser shop on >s3cret ~* &* +@all\n"
    )
    server = subprocess.Popen(
        ["redis-server", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"rediss://shop:s3cret@127.0.0.1:{port}/3?ssl_ca_certs={cert}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.skip("this redis-server does not speak TLS")
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_tracking_over_tls_with_a_user_and_password(tls_redis):
    writer = redis.Redis.from_url(tls_redis)
    layer = LocalCache(tls_redis, ["product:"], seconds=30, max_entries=100)
    try:
        writer.set("product:1", "v1")
        load = Loads()
        layer.get_or_load("product:1", load)
        assert layer.get_or_load("product:1", load) == "v1" and load.calls == 1
        writer.delete("product:1")
        wait_for_push()
        load.value = "v2"
        assert layer.get_or_load("product:1", load) == "v2" and load.calls == 2
        assert [client["db"] for client in writer.client_list() if client.get("name") == CLIENT_NAME] == ["3"]
    finally:
        layer.close()
