"""Operator commands against the real database and Redis: seed, users, cache."""

from __future__ import annotations

import json

from flask import Flask
from sqlalchemy import text

from ecommerce.extensions import db
from tests.conftest import bearer, invoke_cli, login
from tests.factories import ProductFactory, UserFactory

AGGREGATE_DRIFT = """
SELECT p.id FROM products p
LEFT JOIN (SELECT product_id, COUNT(*) AS n, SUM(rating) AS total FROM reviews GROUP BY product_id) r
  ON r.product_id = p.id
WHERE p.rating_count <> COALESCE(r.n, 0)
   OR p.rating_sum <> COALESCE(r.total, 0)
   OR p.rating_avg <> COALESCE(ROUND(r.total::numeric / r.n, 2), 0)
"""

TREE_DEPTH = """
WITH RECURSIVE tree(id, depth) AS (
  SELECT id, 1 FROM categories WHERE parent_id IS NULL
  UNION ALL
  SELECT c.id, tree.depth + 1 FROM categories c JOIN tree ON c.parent_id = tree.id
)
SELECT MAX(depth) FROM tree
"""


def scalar(app: Flask, sql: str):
    with app.app_context():
        value = db.session.scalar(text(sql))
        db.session.remove()
        return value


def counts(app: Flask) -> dict[str, int]:
    return {
        table: scalar(app, f"SELECT COUNT(*) FROM {table}") for table in ("categories", "products", "reviews")
    }


def customers(app: Flask) -> list[str]:
    with app.app_context():
        names = db.session.scalars(
            text("SELECT username FROM users WHERE role = 'customer' ORDER BY username")
        )
        return list(names)


def test_seed_builds_a_catalog_and_tops_it_up_idempotently(app, empty_database):
    result = invoke_cli(app, "seed", "--products", "300", "--customers", "3")
    assert result.exit_code == 0, result.output
    assert "300 new products" in result.output

    first = counts(app)
    assert first["products"] == 300
    assert first["reviews"] > 0
    assert first["categories"] >= 3
    assert scalar(app, TREE_DEPTH) >= 3
    # Products hang on the tree, and only on its leaves.
    assert (
        scalar(app, "SELECT COUNT(*) FROM products WHERE category_id IN (SELECT parent_id FROM categories)")
        == 0
    )
    assert customers(app) == ["customer1", "customer2", "customer3"]
    assert scalar(app, AGGREGATE_DRIFT) is None

    client = app.test_client()
    for number in (1, 2, 3):
        assert login(client, f"customer{number}", "password123")["token_type"] == "Bearer"

    # The aggregate as the API shows it matches the reviews the API lists.
    reviewed = scalar(app, "SELECT product_id FROM reviews ORDER BY product_id LIMIT 1")
    product = client.get(f"/api/products/{reviewed}/").get_json()
    reviews = client.get(f"/api/products/{reviewed}/reviews/?page_size=100")
    assert product["rating_count"] == json.loads(reviews.headers["X-Pagination"])["total"] > 0
    ratings = [review["rating"] for review in reviews.get_json()]
    assert product["rating_avg"] == round(sum(ratings) / len(ratings), 2)

    # Again: nothing new.
    again = invoke_cli(app, "seed", "--products", "300", "--customers", "3")
    assert again.exit_code == 0, again.output
    assert "0 new products" in again.output
    assert counts(app) == first
    assert customers(app) == ["customer1", "customer2", "customer3"]

    # A larger target tops the catalog up; nothing else moves.
    more = invoke_cli(app, "seed", "--products", "350", "--customers", "3")
    assert more.exit_code == 0, more.output
    assert "50 new products" in more.output
    assert counts(app) == {**first, "products": 350}
    assert scalar(app, "SELECT COUNT(DISTINCT name) FROM products") == 350
    assert scalar(app, AGGREGATE_DRIFT) is None
    # The unfiltered list counts the whole catalog too.
    assert json.loads(client.get("/api/products/?page_size=1").headers["X-Pagination"])["total"] == 350


def test_seed_rejects_bad_options(app, empty_database):
    result = invoke_cli(app, "seed", "--products", "5", "--roots", "99")
    assert result.exit_code != 0
    assert "--roots" in result.output
    assert counts(app)["products"] == 0


def test_create_admin(app, empty_database):
    result = invoke_cli(
        app,
        "users",
        "create-admin",
        "--username",
        "boss",
        "--email",
        "Boss@Example.com",
        "--password",
        "s3cret-pass",
    )
    assert result.exit_code == 0, result.output
    assert "Admin boss created" in result.output

    client = app.test_client()
    headers = bearer(login(client, "boss", "s3cret-pass")["access_token"])
    me = client.get("/api/users/me/", headers=headers).get_json()
    assert me["role"] == "admin" and me["email"] == "boss@example.com"
    created = client.post("/api/categories/", json={"name": "Made by the admin"}, headers=headers)
    assert created.status_code == 201, created.get_json()

    duplicate = invoke_cli(
        app,
        "users",
        "create-admin",
        "--username",
        "boss",
        "--email",
        "other@example.com",
        "--password",
        "another-pass",
    )
    assert duplicate.exit_code != 0
    assert "already registered" in duplicate.output
    same_email = invoke_cli(
        app,
        "users",
        "create-admin",
        "--username",
        "boss2",
        "--email",
        "boss@example.com",
        "--password",
        "another-pass",
    )
    assert same_email.exit_code != 0
    assert "already registered" in same_email.output

    short = invoke_cli(
        app,
        "users",
        "create-admin",
        "--username",
        "tiny",
        "--email",
        "tiny@example.com",
        "--password",
        "short",
    )
    assert short.exit_code != 0
    assert "at least 8 characters" in short.output

    assert scalar(app, "SELECT COUNT(*) FROM users") == 1
    # The first admin's password was not touched by the failed attempts.
    login(client, "boss", "s3cret-pass")


def test_set_role(app, empty_database):
    with app.app_context():
        username = UserFactory().username
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    body = {"name": "Promoted"}
    assert client.post("/api/categories/", json=body, headers=headers).status_code == 403

    result = invoke_cli(app, "users", "set-role", username, "admin")
    assert result.exit_code == 0, result.output
    assert f"{username} is now admin" in result.output
    # Roles are read from the database on every request: the same token is admin now.
    assert client.post("/api/categories/", json=body, headers=headers).status_code == 201
    fresh = bearer(login(client, username)["access_token"])
    assert client.get("/api/users/me/", headers=fresh).get_json()["role"] == "admin"

    assert invoke_cli(app, "users", "set-role", username, "customer").exit_code == 0
    assert client.post("/api/categories/", json={"name": "Again"}, headers=headers).status_code == 403

    unknown = invoke_cli(app, "users", "set-role", "nobody", "admin")
    assert unknown.exit_code != 0 and "No user named nobody" in unknown.output
    bad_role = invoke_cli(app, "users", "set-role", username, "superuser")
    assert bad_role.exit_code == 2  # click usage error


def test_deactivate(app, empty_database):
    with app.app_context():
        username = UserFactory().username
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    assert client.get("/api/users/me/", headers=headers).status_code == 200

    result = invoke_cli(app, "users", "deactivate", username)
    assert result.exit_code == 0, result.output
    assert f"{username} is deactivated" in result.output
    # The live token stops working, and logging in again is refused.
    assert client.get("/api/users/me/", headers=headers).status_code == 401
    refused = client.post("/api/auth/login/", json={"username": username, "password": "password123"})
    assert refused.status_code == 401

    unknown = invoke_cli(app, "users", "deactivate", "nobody")
    assert unknown.exit_code != 0 and "No user named nobody" in unknown.output


def test_cache_clear(app, empty_database, redis_client):
    with app.app_context():
        product = ProductFactory()
        product_id = product.id
    client = app.test_client()
    assert client.get(f"/api/products/{product_id}/").status_code == 200
    assert client.get("/api/products/").status_code == 200
    prefix = app.config["CACHE_KEY_PREFIX"]
    assert redis_client.keys(f"{prefix}product:{product_id}")
    assert redis_client.keys(f"{prefix}products:list:*")

    result = invoke_cli(app, "cache", "clear")
    assert result.exit_code == 0, result.output
    assert "Cache cleared." in result.output
    assert redis_client.keys(f"{prefix}*") == []

    # Reads still work and fill the cache again.
    assert client.get(f"/api/products/{product_id}/").status_code == 200
    assert redis_client.keys(f"{prefix}product:{product_id}")
