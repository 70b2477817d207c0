"""LOGIN_CHECK_SECONDS: a worker trusts a login it has checked for that long without asking the
database again (ecommerce/auth/services.py). What must hold: no login query within the window,
a logout through the same process refused at once, a revocation through another process
refused once the window has run out, and the answers that show or change the user read it as
it is now."""

from __future__ import annotations

import time

from sqlalchemy import event, update

from ecommerce.auth.models import AuthSession
from ecommerce.auth.services import forget_checked_logins
from ecommerce.extensions import db
from ecommerce.users.models import User
from tests.factories import PASSWORD, CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, capture_statements, login


def _login_queries(statements: list[str]) -> list[str]:
    return [statement for statement in statements if "auth_sessions" in statement]


def _remembered_on_b(make_instance, seconds: float):
    """Instance a (remembers nothing) and b (remembers for ``seconds``), and a login made on a
    that b has checked once: (a, b's client, the tokens)."""
    a = make_instance()
    b = make_instance(LOGIN_CHECK_SECONDS=seconds)
    with a.app_context():
        username = UserFactory().username
    tokens = login(a.test_client(), username)
    on_b = b.test_client()
    assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 200
    return a, on_b, tokens


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
    """Instance b remembers the login for 3 s; the login is revoked through instance a (another
    process, in production): b still lets it in within those seconds, and not after."""
    a, on_b, tokens = _remembered_on_b(make_instance, 3)
    checked_at = time.monotonic()
    assert (
        a.test_client().post("/api/auth/logout/", headers=bearer(tokens["access_token"])).status_code == 204
    )
    assert time.monotonic() - checked_at < 2.5, "too slow a machine for this window"
    assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 200
    time.sleep(max(0.0, checked_at + 3.1 - time.monotonic()))
    assert on_b.get("/api/cart/", headers=bearer(tokens["access_token"])).status_code == 401


def test_a_remembered_login_never_outlives_its_own_expiry(make_instance):
    app = make_instance(LOGIN_CHECK_SECONDS=60)
    with app.app_context():
        user = UserFactory()
        username, user_id = user.username, user.id
    client = app.test_client()
    token = login(client, username)["access_token"]
    with app.app_context():  # the login ends in 3 seconds (as if it had been made long ago)
        db.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(expires_at=db.func.now() + db.text("interval '3 seconds'"))
        )
        db.session.commit()
    assert client.get("/api/cart/", headers=bearer(token)).status_code == 200
    time.sleep(3.2)
    assert client.get("/api/cart/", headers=bearer(token)).status_code == 401


def test_the_profile_is_read_as_it_is_now(make_instance):
    """Changed through another process: GET /users/me/ shows the change at once, and a
    password change checks the current password against the stored hash, not a remembered one."""
    a = make_instance()
    b = make_instance(LOGIN_CHECK_SECONDS=30)
    with a.app_context():
        username = UserFactory().username
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


def test_a_logout_committed_during_a_check_is_not_remembered_as_live(make_instance):
    """Two requests of one process: a check reads the login, a logout commits and forgets it,
    then the check would store what it read before. It must not: the next request asks again."""
    app = make_instance(LOGIN_CHECK_SECONDS=30)
    with app.app_context():
        username = UserFactory().username
        engine = db.engine
    client = app.test_client()
    token = login(client, username)["access_token"]
    raced: list[bool] = []

    def logout_meanwhile(_connection, _cursor, statement, *_args) -> None:
        if "auth_sessions" in statement and "SELECT" in statement and not raced:
            raced.append(True)  # as if another request's logout committed while this one read
            with app.app_context():
                forget_checked_logins(user_id=None, family_id="any")

    event.listen(engine, "after_cursor_execute", logout_meanwhile)
    try:
        assert client.get("/api/cart/", headers=bearer(token)).status_code == 200
    finally:
        event.remove(engine, "after_cursor_execute", logout_meanwhile)
    assert raced
    with capture_statements(app) as sent:
        assert client.get("/api/cart/", headers=bearer(token)).status_code == 200
    assert len(_login_queries(sent)) == 1, "what was read before the forget was remembered"


def test_a_refresh_is_always_checked_in_the_database(make_instance):
    """A login revoked through another process, then refreshed here within the window: refused
    401 (not taken for a replayed refresh token, which would log a false reuse)."""
    a, on_b, tokens = _remembered_on_b(make_instance, 30)
    assert (
        a.test_client().post("/api/auth/logout/", headers=bearer(tokens["access_token"])).status_code == 204
    )
    refreshed = on_b.post("/api/auth/refresh/", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 401
    assert "revoked" in refreshed.get_json()["detail"]
