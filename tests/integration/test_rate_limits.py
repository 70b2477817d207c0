"""Auth rate limits shared by two app instances through Redis.

Both instances trust one proxy hop, so ``X-Forwarded-For`` names the client. The addresses
below are only header values: every request goes to an in-process test client.
"""

from __future__ import annotations

import time

import pytest

from tests.factories import UserFactory
from tests.helpers import clear_of_a_minute_edge

LIMIT = 5


@pytest.fixture
def instances(make_instance):
    a = make_instance(AUTH_RATE_LIMIT=f"{LIMIT}/minute", TRUSTED_PROXY_HOPS=1)
    b = make_instance(AUTH_RATE_LIMIT=f"{LIMIT}/minute", TRUSTED_PROXY_HOPS=1)
    with a.app_context():
        UserFactory(username="victim")
        UserFactory(username="bystander")
    return a.test_client(), b.test_client()


def from_ip(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


def login_attempt(client, ip: str, username: str, password: str = "wrong-password"):
    return client.post(
        "/api/auth/login/", json={"username": username, "password": password}, headers=from_ip(ip)
    )


def assert_rate_limited(response) -> None:
    assert response.status_code == 429, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_json()
    assert body["status"] == 429 and body["title"] and body["detail"]


def assert_counted_in_redis(redis_client, app_config, ip: str) -> None:
    """The counter lives in Redis (not in this process's memory, which both test apps share)."""
    prefix = app_config["RATELIMIT_KEY_PREFIX"]
    keys = [key.decode() for key in redis_client.scan_iter(f"*{prefix}*")]
    assert any(f"/{ip}/" in key and "auth-ip" in key for key in keys), keys


def test_per_ip_limit_is_shared_by_instances(instances, redis_client):
    a, b = instances
    # Different accounts each time, so only the per-address limit can be reached.
    for attempt in range(LIMIT):
        client = (a, b)[attempt % 2]
        assert login_attempt(client, "10.1.1.1", f"nobody{attempt}").status_code == 401

    assert_rate_limited(login_attempt(a, "10.1.1.1", "nobody-a"))
    assert_rate_limited(login_attempt(b, "10.1.1.1", "nobody-b"))
    # Even the right password is refused from that address now.
    assert_rate_limited(login_attempt(b, "10.1.1.1", "bystander", "password123"))
    assert_counted_in_redis(redis_client, a.application.config, "10.1.1.1")

    # Another address and another account are unaffected, on either instance.
    assert login_attempt(a, "10.2.2.2", "bystander", "password123").status_code == 200
    assert login_attempt(b, "10.2.2.3", "nobody-else").status_code == 401


def test_per_account_limit_across_addresses(instances):
    a, b = instances
    for attempt in range(LIMIT):
        client = (a, b)[attempt % 2]
        assert login_attempt(client, f"10.3.3.{attempt + 1}", "victim").status_code == 401

    assert_rate_limited(login_attempt(a, "10.3.3.100", "victim"))
    # The account name is matched case-insensitively and trimmed.
    assert_rate_limited(login_attempt(b, "10.3.3.101", " Victim "))

    # Another account from a fresh address still gets through.
    assert login_attempt(b, "10.4.4.4", "bystander", "password123").status_code == 200


def test_register_is_limited(instances):
    a, b = instances

    def register(client, ip: str, number: int):
        body = {
            "username": f"newbie{number}",
            "email": f"newbie{number}@example.com",
            "password": "s3cret-pw",
        }
        return client.post("/api/auth/register/", json=body, headers=from_ip(ip))

    for number in range(LIMIT):
        assert register((a, b)[number % 2], "10.5.5.5", number).status_code == 201

    assert_rate_limited(register(a, "10.5.5.5", 100))
    assert_rate_limited(register(b, "10.5.5.5", 101))
    assert register(a, "10.6.6.6", 102).status_code == 201


def test_the_limit_comes_from_config(make_instance):
    # AUTH_RATE_LIMIT is read per request: a looser setting lets more attempts through.
    loose = make_instance(AUTH_RATE_LIMIT="8/minute", TRUSTED_PROXY_HOPS=1).test_client()
    for attempt in range(8):
        assert login_attempt(loose, "10.7.7.7", f"ghost{attempt}").status_code == 401
    assert_rate_limited(login_attempt(loose, "10.7.7.7", "ghost-last"))


# -- the default limit (RATELIMIT_DEFAULT, ecommerce/core/ratelimit.py) -------------------------


def test_default_limit_is_shared_by_instances(make_instance, redis_client):
    """Two instances on one Redis, syncing on every request: one client's requests count once,
    whichever instance they reach, and the answers carry the rate-limit headers."""
    clear_of_a_minute_edge()
    a, b = (
        make_instance(
            RATELIMIT_DEFAULT="6/minute", RATELIMIT_SYNC_SECONDS=0, TRUSTED_PROXY_HOPS=1
        ).test_client()
        for _ in range(2)
    )
    remaining = []
    for number in range(6):
        response = (a, b)[number % 2].get("/api/categories/", headers=from_ip("10.8.8.8"))
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "6"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [5, 4, 3, 2, 1, 0]
    for client in (a, b):
        refused = client.get("/api/categories/", headers=from_ip("10.8.8.8"))
        assert_rate_limited(refused)
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert "6 per 1 minute" in refused.get_json()["detail"]
    assert a.get("/api/categories/", headers=from_ip("10.8.8.9")).status_code == 200
    keys = [key.decode() for key in redis_client.scan_iter("*:default:*")]
    assert any(key.endswith(":10.8.8.8/categories.CategoriesView") for key in keys), keys


def _limit(redis, amount: int, sync_seconds: float):
    from limits import parse_many

    from ecommerce.core.ratelimit import DefaultLimit

    return DefaultLimit(parse_many(f"{amount}/minute"), redis, "test-default", sync_seconds)


def test_default_limit_between_syncs_passes_by_what_the_others_accepted(redis_client):
    """Between two syncs a process sees only its own new requests: a client can pass the limit
    by what another process accepted since their last syncs, and no more; after a sync each
    knows the total. (Syncs by hand here: the processes' own would come every hour.)"""
    a, b = _limit(redis_client, 10, 3600), _limit(redis_client, 10, 3600)
    start = 60 * 1000 + 0.5  # in a window, far from its end
    assert all(a.hit("client", start).allowed for _ in range(6))
    assert all(b.hit("client", start).allowed for _ in range(6))  # 12 accepted: 2 past the limit
    assert b.hit("client", start).allowed  # b has seen 7 of them
    assert [b.hit("client", start).allowed for _ in range(4)] == [True, True, True, False]
    a.sync(start), b.sync(start)
    assert redis_client.get("test-default:0:1000:client") == b"16"
    # a shared its 6 before b shared its 10: it learns of them at its next sync, not before.
    assert a.hit("client", start).allowed
    a.sync(start)
    assert redis_client.get("test-default:0:1000:client") == b"17"
    refused = a.hit("client", start)
    assert not refused.allowed and refused.remaining == 0 and not b.hit("client", start).allowed
    a.sync(start), b.sync(start)
    assert redis_client.get("test-default:0:1000:client") == b"17"  # refusals are not counted
    # The next window starts from nothing.
    assert a.hit("client", start + 60).allowed


def test_default_limit_counts_alone_while_redis_is_down_and_shares_later(redis_client):
    import redis

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    limit = _limit(down, 3, 0)
    start = 60 * 2000 + 1.0
    verdicts = [limit.hit("client", start + n * 0.01).allowed for n in range(4)]
    assert verdicts == [True, True, True, False]  # the limit holds in this process, nothing raised
    # Redis back: the counts kept are added at the next sync.
    limit.redis = redis_client
    limit.sync(start + 2)  # after the second of waiting that a failed sync imposes
    assert redis_client.get("test-default:0:2000:client") == b"3"


def test_default_limit_is_shared_in_the_background(make_instance, redis_client):
    """With the shipped RATELIMIT_SYNC_SECONDS (0.1 s) each instance shares its counts beside the
    requests: an instance that has not seen a client yet learns its count within a sync."""
    clear_of_a_minute_edge()
    settings = {"RATELIMIT_DEFAULT": "6/minute", "TRUSTED_PROXY_HOPS": 1}
    a, b = (make_instance(**settings).test_client() for _ in range(2))
    for _ in range(6):
        assert a.get("/api/categories/", headers=from_ip("10.9.9.9")).status_code == 200
    assert_rate_limited(a.get("/api/categories/", headers=from_ip("10.9.9.9")))
    time.sleep(0.5)  # a has shared its 6
    # b shares its first request of this client, and learns of a's 6 doing so.
    assert b.get("/api/categories/", headers=from_ip("10.9.9.9")).status_code == 200
    time.sleep(0.5)
    assert_rate_limited(b.get("/api/categories/", headers=from_ip("10.9.9.9")))
    keys = [key for key in redis_client.scan_iter("*:default:*") if b"10.9.9.9" in key]
    assert [int(redis_client.get(key)) for key in keys] == [7]
