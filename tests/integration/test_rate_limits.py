"""Auth rate limits shared by two app instances through Redis.

Both instances trust one proxy hop, so ``X-Forwarded-For`` names the client. The addresses
below are only header values: every request goes to an in-process test client.
"""

from __future__ import annotations

import pytest

from tests.factories import UserFactory

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
