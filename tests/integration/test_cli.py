"""Operator commands against the real database and Redis: seed, users, cache; and the
PASSWORD_MIN_LENGTH setting they share with the API."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from sqlalchemy import text

from ecommerce.errors import NotFound
from ecommerce.extensions import db
from ecommerce.tasks import configure_queue
from ecommerce.users import services as user_services
from ecommerce.users.models import Role
from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, invoke_cli, login

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
    assert "password: Must be between 8 and 128 characters." in short.output

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
    assert unknown.exit_code == 1 and "No user named nobody" in unknown.output
    assert "Traceback" not in unknown.output
    bad_role = invoke_cli(app, "users", "set-role", username, "superuser")
    assert bad_role.exit_code == 2  # click usage error

    # The command is the service's: the same rule, the same refusal.
    with app.app_context():
        assert user_services.set_role(username, Role.ADMIN).role is Role.ADMIN
        with pytest.raises(NotFound, match="No user named nobody"):
            user_services.set_role("nobody", Role.ADMIN)
        db.session.remove()
    assert scalar(app, f"SELECT role FROM users WHERE username = '{username}'") == "admin"


def test_deactivate(app, empty_database):
    with app.app_context():
        username = UserFactory().username
        bystander = UserFactory().username
    client = app.test_client()
    logins = [login(client, username), login(client, username)]  # two devices
    other = bearer(login(client, bystander)["access_token"])
    for tokens in logins:
        assert client.get("/api/users/me/", headers=bearer(tokens["access_token"])).status_code == 200

    result = invoke_cli(app, "users", "deactivate", username)
    assert result.exit_code == 0, result.output
    assert f"{username} is deactivated" in result.output
    # Every live token stops working at once, refresh tokens too, and logging in again is refused.
    for tokens in logins:
        assert client.get("/api/users/me/", headers=bearer(tokens["access_token"])).status_code == 401
        refreshed = client.post("/api/auth/refresh/", headers=bearer(tokens["refresh_token"]))
        assert refreshed.status_code == 401
    refused = client.post("/api/auth/login/", json={"username": username, "password": "password123"})
    assert refused.status_code == 401
    # Its logins are revoked (not merely refused while the account is inactive); others' are not.
    revoked = scalar(
        app,
        "SELECT string_agg(DISTINCT coalesce(s.revoked_reason, 'live'), ',') FROM auth_sessions s "
        f"JOIN users u ON u.id = s.user_id WHERE u.username = '{username}'",
    )
    assert revoked == "deactivated"
    assert client.get("/api/users/me/", headers=other).status_code == 200

    unknown = invoke_cli(app, "users", "deactivate", "nobody")
    assert unknown.exit_code == 1 and "No user named nobody" in unknown.output
    with app.app_context(), pytest.raises(NotFound, match="No user named nobody"):
        user_services.deactivate_user("nobody")


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


@pytest.fixture
def app_without_redis(app, build_app, tmp_path):
    """The embedded configuration: no REDIS_URL, so the cache is Flask-Caching's SimpleCache."""
    instance = build_app(REDIS_URL=None, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))
    yield instance
    # The job queue is one per process and follows the app built last: back to the suite's Redis.
    configure_queue(app)


def test_cache_clear_without_redis_says_it_cannot_reach_the_servers_cache(app_without_redis):
    assert app_without_redis.config["CACHE_TYPE"] == "SimpleCache"
    result = invoke_cli(app_without_redis, "cache", "clear")
    assert result.exit_code == 1
    assert (
        "The cache lives inside the running server (no REDIS_URL): restart the server to clear it."
        in result.output
    )
    assert "Cache cleared." not in result.output and "Traceback" not in result.output


def create_admin(app: Flask, username: str, email: str, password: str):
    args = ("users", "create-admin", "--username", username, "--email", email, "--password", password)
    return invoke_cli(app, *args)


def test_create_admin_validates_as_registration_does(app, empty_database):
    bad_email = create_admin(app, "boss", "not-an-email", "s3cret-pass")
    assert bad_email.exit_code == 1
    assert "email: Not a valid email address." in bad_email.output
    # Every field's messages at once, each under its name.
    several = create_admin(app, "no spaces", "boss@", "short")
    assert several.exit_code == 1
    assert "username: Use letters, digits, '.', '_' or '-' only." in several.output
    assert "email: Not a valid email address." in several.output
    assert "password: Must be between 8 and 128 characters." in several.output
    assert "Traceback" not in several.output

    # The API refuses the very same values with the very same messages.
    client = app.test_client()
    body = {"username": "no spaces", "email": "boss@", "password": "short"}
    errors = client.post("/api/auth/register/", json=body).get_json()["errors"]
    assert errors["email"] == ["Not a valid email address."]
    assert errors["password"] == ["Must be between 8 and 128 characters."]
    assert scalar(app, "SELECT COUNT(*) FROM users") == 0


def test_password_min_length_is_a_setting(app, make_instance, empty_database):
    strict = make_instance(PASSWORD_MIN_LENGTH=12)
    eleven, twelve = "abcdefghijk", "abcdefghijkl"

    short = create_admin(strict, "boss", "boss@example.com", eleven)
    assert short.exit_code == 1
    assert "password: Must be between 12 and 128 characters." in short.output
    ok = create_admin(strict, "boss", "boss@example.com", twelve)
    assert ok.exit_code == 0, ok.output

    client = strict.test_client()
    register = "/api/auth/register/"
    shopper = {"username": "shopper", "email": "s@example.com"}
    refused = client.post(register, json={**shopper, "password": eleven})
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["password"] == ["Must be between 12 and 128 characters."]
    accepted = client.post(register, json={**shopper, "password": twelve})
    assert accepted.status_code == 201, accepted.get_json()

    headers = bearer(login(client, "shopper", twelve)["access_token"])
    change = {"password": eleven, "current_password": twelve}
    too_short = client.patch("/api/users/me/", json=change, headers=headers)
    assert too_short.status_code == 422
    assert too_short.get_json()["errors"]["password"] == ["Must be between 12 and 128 characters."]

    # The setting is the app's: at the same time, an app left at the default takes eight.
    default = app.test_client().post(
        register, json={"username": "relaxed", "email": "r@example.com", "password": "eight888"}
    )
    assert default.status_code == 201, default.get_json()
    seeded = invoke_cli(strict, "seed", "--products", "0", "--customers", "0", "--load-password", eleven)
    assert seeded.exit_code == 2
    assert "--load-password" in seeded.output and "at least 12 characters" in seeded.output
