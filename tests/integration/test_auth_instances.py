"""Tokens across two app instances, refresh rotation under concurrency, racing registrations."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ecommerce.auth.models import AuthSession
from ecommerce.extensions import db
from ecommerce.users.models import User
from tests.factories import UserFactory
from tests.helpers import bearer, login, run_concurrently


@pytest.fixture
def instances(make_instance):
    a, b = make_instance(), make_instance()
    with a.app_context():
        UserFactory(username="alice")
    return a, b


def me(client, token: str):
    return client.get("/api/users/me/", headers=bearer(token))


def refresh(client, refresh_token: str):
    return client.post("/api/auth/refresh/", headers=bearer(refresh_token))


def login_row(app) -> AuthSession:
    with app.app_context():
        rows = db.session.scalars(select(AuthSession)).all()
        assert len(rows) == 1
        db.session.expunge_all()
        return rows[0]


def test_token_from_a_works_on_b_and_logout_on_a_revokes_on_b(instances):
    a, b = instances
    on_a, on_b = a.test_client(), b.test_client()
    tokens = login(on_a, "alice")

    profile = me(on_b, tokens["access_token"])
    assert profile.status_code == 200 and profile.get_json()["username"] == "alice"

    assert on_a.post("/api/auth/logout/", headers=bearer(tokens["access_token"])).status_code == 204
    revoked = me(on_b, tokens["access_token"])
    assert revoked.status_code == 401
    assert revoked.headers["Content-Type"] == "application/problem+json"
    # The login's refresh token died with it, on either instance.
    assert refresh(on_b, tokens["refresh_token"]).status_code == 401
    assert refresh(on_a, tokens["refresh_token"]).status_code == 401


def test_replaying_a_rotated_refresh_token_revokes_the_login_everywhere(instances):
    a, b = instances
    on_a, on_b = a.test_client(), b.test_client()
    old = login(on_a, "alice")

    rotated = refresh(on_b, old["refresh_token"])
    assert rotated.status_code == 200
    new = rotated.get_json()
    assert new["refresh_token"] != old["refresh_token"]
    assert me(on_a, new["access_token"]).status_code == 200

    replay = refresh(on_a, old["refresh_token"])
    assert replay.status_code == 401
    assert replay.headers["Content-Type"] == "application/problem+json"

    for client in (on_a, on_b):
        assert me(client, new["access_token"]).status_code == 401
        assert me(client, old["access_token"]).status_code == 401
        assert refresh(client, new["refresh_token"]).status_code == 401
    assert login_row(a).revoked_reason == "refresh_reuse"


def test_concurrent_refreshes_with_one_token(instances):
    a, b = instances
    tokens = login(a.test_client(), "alice")
    # Half the racers on each instance.
    clients = [(a, b)[n % 2].test_client() for n in range(10)]

    responses = run_concurrently([lambda c=c: refresh(c, tokens["refresh_token"]) for c in clients])

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [401] * 9, [r.get_json() for r in responses]
    winner = next(r.get_json() for r in responses if r.status_code == 200)
    # The losers presented a used token: reuse, so the winner's new tokens are dead too.
    assert me(a.test_client(), winner["access_token"]).status_code == 401
    assert refresh(b.test_client(), winner["refresh_token"]).status_code == 401
    row = login_row(a)
    assert row.revoked_at is not None and row.revoked_reason == "refresh_reuse"


def test_concurrent_registrations_of_one_username(instances):
    a, b = instances
    clients = [(a, b)[n % 2].test_client() for n in range(20)]

    def register(client, n: int):
        body = {"username": "racer", "email": f"racer{n}@example.com", "password": "s3cret-pw"}
        return client.post("/api/auth/register/", json=body)

    responses = run_concurrently([lambda c=c, n=n: register(c, n) for n, c in enumerate(clients)])

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, [r.get_json() for r in responses if r.status_code != 409]
    for response in responses:
        if response.status_code == 409:
            assert response.headers["Content-Type"] == "application/problem+json"
    with a.app_context():
        assert len(db.session.scalars(select(User).where(User.username == "racer")).all()) == 1
