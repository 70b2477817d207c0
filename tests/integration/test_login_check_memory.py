"""LOGIN_CHECK_SECONDS: a worker trusts a login it has checked for that long without asking the
database again (ecommerce/auth/services.py). What must hold: no login query within the window,
a logout through the same process refused at once, a revocation through another process
refused once the window has run out, and the answers that show or change the user read it as
it is now."""

from __future__ import annotations

import time

from sqlalchemy import update

from ecommerce.auth.models import AuthSession
from ecommerce.extensions import db
from ecommerce.users.models import Role, User
from tests.factories import PASSWORD, CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, capture_statements, login


def _login_queries(statements: list[str]) -> list[str]:
    return [statement for statement in statements if "auth_sessions" in statement]


def test_a_checked_login_is_not_asked_again_within_the_window(make_instance):
    app = make_instance(LOGIN_CHECK_SECONDS=30)
    with app.app_context():
        username = UserFactory().username
        product_id = ProductFactory(category_id=CategoryFactory().id, stock_quantity=5).id
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    assert client.get("/api/cart/", headers=headers).status_code == 200  # checked: remembered
    with capture_statements(app) as sent:
        added = client.post(
            "/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers
        )
        placed = client.post("/api/orders/", json={}, headers=headers)
    assert added.status_code == 201 and placed.status_code == 201, placed.get_json()
    assert _login_queries(sent) == [], sent
    with app.app_context():
        assert placed.get_json()["user_id"] == db.session.scalar(
            db.select(User.id).where(User.username == username)
        )


def test_with_the_default_every_request_asks(make_instance):
    app = make_instance()
    assert app.config["LOGIN_CHECK_SECONDS"] == 0
    with app.app_context():
        username = UserFactory().username
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    with capture_statements(app) as sent:
        for _ in range(3):
            assert client.get("/api/cart/", headers=headers).status_code == 200
    assert len(_login_queries(sent)) == 3


def test_a_logout_through_the_same_process_is_refused_at_once(make_instance):
    app = make_instance(LOGIN_CHECK_SECONDS=30)
    with app.app_context():
        username = UserFactory().username
    client = app.test_client()
    token = login(client, username)["access_token"]
    assert client.get("/api/cart/", headers=bearer(token)).status_code == 200
    assert client.post("/api/auth/logout/", headers=bearer(token)).status_code == 204
    refused = client.get("/api/cart/", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/problem+json"


def test_a_revocation_elsewhere_is_refused_once_the_window_runs_out(make_instance):
    """Instance b remembers the login for 1 s; the login is revoked in the database (as a logout
    through another process does): b still lets it in within that second, and not after."""
    a = make_instance()
    b = make_instance(LOGIN_CHECK_SECONDS=1)
    with a.app_context():
        username = UserFactory().username
    tokens = login(a.test_client(), username)
    on_b = b.test_client()
    assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 200
    checked_at = time.monotonic()
    assert (
        a.test_client().post("/api/auth/logout/", headers=bearer(tokens["access_token"])).status_code == 204
    )
    if time.monotonic() - checked_at < 0.8:
        assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 200
    time.sleep(max(0.0, checked_at + 1.1 - time.monotonic()))
    assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 401


def test_a_remembered_login_never_outlives_its_own_expiry(make_instance):
    app = make_instance(LOGIN_CHECK_SECONDS=60)
    with app.app_context():
        user = UserFactory()
        username, user_id = user.username, user.id
    client = app.test_client()
    token = login(client, username)["access_token"]
    with app.app_context():  # the login ends in one second (as if it had been made long ago)
        db.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(expires_at=db.func.now() + db.text("interval '1 second'"))
        )
        db.session.commit()
    assert client.get("/api/cart/", headers=bearer(token)).status_code == 200
    time.sleep(1.2)
    assert client.get("/api/cart/", headers=bearer(token)).status_code == 401


def test_the_profile_is_read_as_it_is_now(make_instance):
    """Changed through another process: GET /users/me/ shows the change at once, and a
    password change checks the current password against the stored hash, not a remembered one."""
    a = make_instance()
    b = make_instance(LOGIN_CHECK_SECONDS=30)
    with a.app_context():
        user = UserFactory()
        username, user_id = user.username, user.id
    token = login(a.test_client(), username)["access_token"]
    on_b = b.test_client()
    assert on_b.get("/api/users/me/", headers=bearer(token)).status_code == 200
    changed = a.test_client().patch("/api/users/me/", json={"first_name": "Renamed"}, headers=bearer(token))
    assert changed.status_code == 200
    assert on_b.get("/api/users/me/", headers=bearer(token)).get_json()["first_name"] == "Renamed"
    moved = a.test_client().patch(
        "/api/users/me/",
        json={"current_password": PASSWORD, "password": "a-new-password-1"},
        headers=bearer(token),
    )
    assert moved.status_code == 200, moved.get_json()
    again = on_b.patch(
        "/api/users/me/",
        json={"current_password": "a-new-password-1", "password": "another-password-2"},
        headers=bearer(token),
    )
    assert again.status_code == 200, again.get_json()
    with a.app_context():
        assert db.session.get(User, user_id).role == Role.CUSTOMER
