"""The embedded defaults (no DATABASE_URL, no REDIS_URL) serve the same API.

SQLite in a fresh instance folder, an in-process cache and rate-limit store: migrated and
seeded by the real CLI, served by the real gunicorn.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.helpers import assert_pagination, bearer
from tests.integration.servers import clean_env, gunicorn, run_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    instance = tmp_path_factory.mktemp("instance")
    # No DATABASE_URL and no REDIS_URL: clean_env drops them. INSTANCE_PATH is read by
    # ecommerce/config.py at import time, so it must be in the subprocess's environment.
    env = clean_env(INSTANCE_PATH=str(instance), LOG_LEVEL="info")
    run_cli(["db", "upgrade"], env)
    seeded = run_cli(["seed", "--products", "50", "--customers", "2"], env)
    assert "50 new products" in seeded.stdout, seeded.stdout
    assert (instance / "ecommerce.db").is_file()
    with gunicorn(env, instance / "gunicorn.log") as running:
        yield running


def test_embedded_defaults_serve_the_api(server):
    ready = server.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "not configured"}

    account = {"username": "embedded", "email": "embedded@example.com", "password": "s3cret-pw"}
    registered = server.post("/api/auth/register/", json=account)
    assert registered.status_code == 201, registered.text
    assert registered.json()["role"] == "customer"
    assert server.post("/api/auth/register/", json=account).status_code == 409
    logged_in = server.post("/api/auth/login/", json={"username": "embedded", "password": "s3cret-pw"})
    assert logged_in.status_code == 200, logged_in.text
    headers = bearer(logged_in.json()["access_token"])
    assert server.get("/api/users/me/", headers=headers).json()["username"] == "embedded"

    listing = server.get("/api/products/", params={"page_size": 20, "sort": "price"})
    assert listing.status_code == 200
    assert_pagination(listing, total=50, page_size=20)
    prices = [Decimal(p["price"]) for p in listing.json()]
    assert len(prices) == 20 and prices == sorted(prices)

    product_id = listing.json()[0]["id"]
    url = f"/api/products/{product_id}/"
    detail = server.get(url)
    assert detail.status_code == 200
    etag = detail.headers["ETag"]
    assert server.get(url, headers={"If-None-Match": etag}).status_code == 304
    count_before = detail.json()["rating_count"]

    review = server.post(f"{url}reviews/", json={"rating": 5, "comment": "Embedded"}, headers=headers)
    assert review.status_code == 201, review.text
    assert server.post(f"{url}reviews/", json={"rating": 1}, headers=headers).status_code == 409

    after = server.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["ETag"] != etag
    moved = after.json()
    assert moved["rating_count"] == count_before + 1
    ratings = [r["rating"] for r in server.get(f"{url}reviews/", params={"page_size": 100}).json()]
    assert len(ratings) == moved["rating_count"]
    expected = (Decimal(sum(ratings)) / len(ratings)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert moved["rating_avg"] == float(expected)
    assert "Traceback" not in server.log()
