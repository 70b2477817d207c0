"""Users: one's own profile (read, edit, password change) and the admin's list of accounts."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import PASSWORD, AdminFactory, UserFactory
from tests.helpers import assert_pagination, bearer, login

ME = "/api/users/me/"
USER_FIELDS = {"id", "username", "email", "first_name", "last_name", "role", "created_at", "updated_at"}


@pytest.mark.parametrize("path", ["/api/users/me/", "/api/users/me"])
def test_me_returns_own_profile(client, user, user_headers, path):
    response = client.get(path, headers=user_headers)
    assert response.status_code == 200, response.get_json()
    profile = response.get_json()
    assert set(profile) == USER_FIELDS
    assert profile["id"] == user.id
    assert profile["username"] == user.username
    assert profile["email"] == user.email
    assert profile["role"] == "customer"
    assert profile["created_at"].endswith("Z")
    raw = response.get_data(as_text=True)
    assert "password" not in raw and "argon2" not in raw


def test_me_needs_a_token(client):
    response = client.get(ME)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert client.patch(ME, json={"first_name": "X"}).status_code == 401


def test_patch_me_changes_names_and_email(client, user, user_headers):
    before = client.get(ME, headers=user_headers).get_json()
    new_email = f"New.{user.username}@Example.org"
    response = client.patch(
        ME, json={"first_name": "Ada", "last_name": "Lovelace", "email": new_email}, headers=user_headers
    )
    assert response.status_code == 200, response.get_json()
    profile = response.get_json()
    assert profile["first_name"] == "Ada"
    assert profile["last_name"] == "Lovelace"
    assert profile["email"] == new_email.lower()
    assert profile["id"] == before["id"] and profile["username"] == before["username"]
    assert profile["created_at"] == before["created_at"]
    assert client.get(ME, headers=user_headers).get_json() == profile

    # The new email is a login name; the old one no longer is.
    assert login(client, new_email)["token_type"] == "Bearer"
    old = client.post("/api/auth/login/", json={"username": before["email"], "password": PASSWORD})
    assert old.status_code == 401


def test_patch_me_without_slash(client, user_headers):
    response = client.patch("/api/users/me", json={"first_name": "Grace"}, headers=user_headers)
    assert response.status_code == 200
    assert response.get_json()["first_name"] == "Grace"


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_patch_me_email_taken_is_409(client, user, user_headers, case):
    other = UserFactory()
    response = client.patch(ME, json={"email": case(other.email)}, headers=user_headers)
    assert response.status_code == 409, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    # Nothing changed.
    assert client.get(ME, headers=user_headers).get_json()["email"] == user.email


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"role": "admin"}, "role"),
        ({"username": "renamed"}, "username"),
        ({"password": "short", "current_password": PASSWORD}, "password"),
    ],
)
def test_patch_me_validation_is_422(client, user_headers, body, field):
    response = client.patch(ME, json=body, headers=user_headers)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize("current", [None, "", "wrong-password"])
def test_password_change_needs_the_current_password(client, user, user_headers, current):
    body = {"password": "a-new-password"}
    if current is not None:
        body["current_password"] = current
    response = client.patch(ME, json=body, headers=user_headers)
    assert response.status_code == 422, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "current_password" in response.get_json()["errors"]
    # The password did not change.
    assert login(client, user.username)["token_type"] == "Bearer"
    failed = client.post("/api/auth/login/", json={"username": user.username, "password": "a-new-password"})
    assert failed.status_code == 401


def test_password_change_ends_other_logins(client, user):
    current = login(client, user.username)
    other = login(client, user.username)

    response = client.patch(
        ME,
        json={"password": "a-new-password", "current_password": PASSWORD},
        headers=bearer(current["access_token"]),
    )
    assert response.status_code == 200, response.get_json()
    assert "password" not in response.get_data(as_text=True)

    # The new password logs in; the old one does not.
    assert login(client, user.username, "a-new-password")["token_type"] == "Bearer"
    old = client.post("/api/auth/login/", json={"username": user.username, "password": PASSWORD})
    assert old.status_code == 401

    # Every other login of the user is revoked, access and refresh token alike.
    assert client.get(ME, headers=bearer(other["access_token"])).status_code == 401
    assert client.post("/api/auth/refresh/", headers=bearer(other["refresh_token"])).status_code == 401
    # The login that made the change keeps working.
    assert client.get(ME, headers=bearer(current["access_token"])).status_code == 200
    assert client.post("/api/auth/refresh/", headers=bearer(current["refresh_token"])).status_code == 200


# -- the admin's view ------------------------------------------------------------------------


def _tagged_users():
    """Accounts whose names share a tag no other test uses, so filters can be checked exactly."""
    tag = uuid.uuid4().hex[:8]
    customers = [UserFactory(username=f"cust{i}-{tag}") for i in range(3)]
    admins = [AdminFactory(username=f"boss{i}-{tag}") for i in range(2)]
    return tag, customers, admins


def test_admin_lists_users_paginated(client, admin_headers):
    tag, customers, admins = _tagged_users()
    everyone = sorted(u.id for u in customers + admins)

    response = client.get(f"/api/users/?q={tag}&page=2&page_size=2", headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    assert_pagination(response, total=5, page=2, page_size=2)
    page = response.get_json()
    assert isinstance(page, list) and len(page) == 2
    assert [u["id"] for u in page] == everyone[2:4]
    assert all(set(u) == USER_FIELDS for u in page)
    assert "password" not in response.get_data(as_text=True)

    # Without the final slash: the same page.
    same = client.get(f"/api/users?q={tag}&page=2&page_size=2", headers=admin_headers)
    assert same.status_code == 200 and same.get_json() == page


def test_admin_filters_users_by_role_and_text(client, admin_headers):
    tag, customers, admins = _tagged_users()

    def ids(query):
        response = client.get(f"/api/users/?{query}&page_size=100", headers=admin_headers)
        assert response.status_code == 200, response.get_json()
        return {u["id"] for u in response.get_json()}

    assert ids(f"q={tag}&role=admin") == {u.id for u in admins}
    assert ids(f"q={tag}&role=customer") == {u.id for u in customers}
    assert ids(f"q=cust1-{tag}") == {customers[1].id}
    # q matches the email too, case-insensitively.
    assert ids(f"q=BOSS0-{tag.upper()}@EXAMPLE") == {admins[0].id}
    every_admin = client.get("/api/users/?role=admin&page_size=100", headers=admin_headers).get_json()
    assert {u["role"] for u in every_admin} == {"admin"}
    # LIKE wildcards are matched literally.
    assert ids(f"q=%25{tag}") == set()
    assert ids(f"q=cust_-{tag}") == set()


@pytest.mark.parametrize("query", ["role=superuser", "page_size=101", "page=0", "q="])
def test_bad_user_list_queries_are_422(client, admin_headers, query):
    response = client.get(f"/api/users/?{query}", headers=admin_headers)
    assert response.status_code == 422, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"


def test_user_list_is_for_admins_only(client, user, user_headers):
    anonymous = client.get("/api/users/")
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"] == "application/problem+json"
    forbidden = client.get("/api/users/", headers=user_headers)
    assert forbidden.status_code == 403
    assert forbidden.headers["Content-Type"] == "application/problem+json"
    assert forbidden.get_json()["status"] == 403
    assert client.get(f"/api/users/{user.id}/", headers=user_headers).status_code == 403
    assert client.get(f"/api/users/{user.id}/").status_code == 401


def test_admin_reads_one_user(client, admin_headers):
    other = UserFactory()
    response = client.get(f"/api/users/{other.id}/", headers=admin_headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == USER_FIELDS
    assert body["id"] == other.id and body["username"] == other.username
    same = client.get(f"/api/users/{other.id}", headers=admin_headers)
    assert same.status_code == 200 and same.get_json() == body


def test_admin_reading_an_unknown_user_is_404(client, admin_headers):
    for path in ("/api/users/987654321/", "/api/users/99999999999999999/"):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"
