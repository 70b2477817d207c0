"""Auth: register, login, refresh rotation with reuse detection, logout, and every 401."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token, decode_token

from ecommerce.core import tokens as token_memory
from ecommerce.extensions import db
from tests.factories import PASSWORD, UserFactory
from tests.helpers import bearer, login

REGISTER = "/api/auth/register/"
LOGIN = "/api/auth/login/"
REFRESH = "/api/auth/refresh/"
LOGOUT = "/api/auth/logout/"
ME = "/api/users/me/"

USER_FIELDS = {"id", "username", "email", "first_name", "last_name", "role", "created_at", "updated_at"}


def _registration(**overrides):
    # Names unique per call: a test never depends on which accounts other tests left behind.
    name = f"alice{uuid.uuid4().hex[:10]}"
    body = {
        "username": name,
        "email": f"{name}@example.com",
        "password": "correct horse",
        "first_name": "Alice",
        "last_name": "Liddell",
    }
    body.update(overrides)
    return body


def assert_unauthorized(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    problem = response.get_json()
    assert problem["status"] == 401
    assert {"type", "title", "status", "detail"} <= set(problem)
    return problem


def refresh(client, refresh_token):
    return client.post(REFRESH, headers=bearer(refresh_token))


def me(client, access_token):
    return client.get(ME, headers=bearer(access_token))


# -- register ----------------------------------------------------------------------------


def test_register_creates_a_customer(client):
    body = _registration()
    response = client.post(REGISTER, json={**body, "email": body["email"].replace("alice", "Alice").upper()})
    assert response.status_code == 201, response.get_json()
    user = response.get_json()
    assert set(user) == USER_FIELDS
    assert user["username"] == body["username"]
    assert user["email"] == body["email"]
    assert user["first_name"] == "Alice" and user["last_name"] == "Liddell"
    assert user["role"] == "customer"
    assert user["created_at"].endswith("Z") and user["updated_at"].endswith("Z")
    raw = response.get_data(as_text=True)
    assert "correct horse" not in raw and "password" not in raw and "argon2" not in raw

    # The new account can log in, by username and by its (lower-cased) email.
    tokens = login(client, body["username"], "correct horse")
    profile = me(client, tokens["access_token"])
    assert profile.status_code == 200 and profile.get_json() == user
    assert login(client, body["email"], "correct horse")["token_type"] == "Bearer"


def test_register_role_cannot_be_chosen(client):
    response = client.post(REGISTER, json=_registration(role="admin"))
    assert response.status_code == 422
    assert "role" in response.get_json()["errors"]


@pytest.mark.parametrize("clash", ["username", "email", "email in other case"])
def test_register_duplicate_is_409(client, clash):
    first = _registration()
    assert client.post(REGISTER, json=first).status_code == 201
    second = _registration()
    if clash == "username":
        second["username"] = first["username"]
    elif clash == "email":
        second["email"] = first["email"]
    else:
        second["email"] = first["email"].upper()
    response = client.post(REGISTER, json=second)
    assert response.status_code == 409, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["status"] == 409


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@"}, "email"),
        ({"password": "short7!"}, "password"),
        ({"password": ""}, "password"),
        ({"username": "ab"}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": 12345}, "username"),
    ],
)
def test_register_validation_is_422(client, overrides, field):
    response = client.post(REGISTER, json=_registration(**overrides))
    assert response.status_code == 422, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 422
    assert set(problem["errors"]) == {field}
    assert isinstance(problem["errors"][field], list) and problem["errors"][field]


def test_register_password_of_eight_characters_is_enough(client):
    assert client.post(REGISTER, json=_registration(password="12345678")).status_code == 201


def test_register_missing_fields_are_listed_per_field(client):
    response = client.post(REGISTER, json={})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert {"username", "email", "password"} <= set(errors)
    for field in ("username", "email", "password"):
        assert isinstance(errors[field], list) and errors[field]


# -- login -------------------------------------------------------------------------------


def _assert_token_pair(tokens):
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["access_token"] != tokens["refresh_token"]


@pytest.mark.parametrize("name", ["username", "email", "EMAIL"])
def test_login_by_username_or_email(client, user, name):
    login_name = {"username": user.username, "email": user.email, "EMAIL": user.email.upper()}[name]
    response = client.post(LOGIN, json={"username": login_name, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    tokens = response.get_json()
    _assert_token_pair(tokens)
    profile = me(client, tokens["access_token"])
    assert profile.status_code == 200 and profile.get_json()["id"] == user.id


def test_bad_password_and_unknown_user_answer_alike(client, user):
    same_id = {"X-Request-ID": "same-request-id"}
    wrong_password = client.post(
        LOGIN, json={"username": user.username, "password": "wrong-password"}, headers=same_id
    )
    unknown_user = client.post(LOGIN, json={"username": "nobody-here", "password": PASSWORD}, headers=same_id)
    unknown_email = client.post(
        LOGIN, json={"username": "nobody@example.com", "password": PASSWORD}, headers=same_id
    )
    bodies = [assert_unauthorized(r) for r in (wrong_password, unknown_user, unknown_email)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "password" in bodies[0]["detail"].lower()


def test_login_missing_password_is_422(client, user):
    response = client.post(LOGIN, json={"username": user.username})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


# -- refresh rotation and reuse detection ------------------------------------------------


def test_refresh_rotates_both_tokens(client, user):
    first = login(client, user.username)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.get_json()
    second = response.get_json()
    _assert_token_pair(second)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert me(client, second["access_token"]).status_code == 200

    # The rotated refresh token rotates again.
    third = refresh(client, second["refresh_token"])
    assert third.status_code == 200
    assert me(client, third.get_json()["access_token"]).status_code == 200


def test_replayed_refresh_token_revokes_the_whole_login(client, user):
    first = login(client, user.username)
    second = refresh(client, first["refresh_token"]).get_json()
    third = refresh(client, second["refresh_token"]).get_json()
    other_login = login(client, user.username)

    # A stolen, already-used refresh token comes back.
    assert_unauthorized(refresh(client, first["refresh_token"]))

    # Every token of that login is dead now, the newest refresh token included.
    assert_unauthorized(refresh(client, third["refresh_token"]))
    for tokens in (first, second, third):
        assert_unauthorized(me(client, tokens["access_token"]))
    # Another login of the same user is not touched.
    assert me(client, other_login["access_token"]).status_code == 200
    assert refresh(client, other_login["refresh_token"]).status_code == 200


def test_refresh_token_is_not_an_access_token_and_vice_versa(client, user):
    tokens = login(client, user.username)
    assert_unauthorized(me(client, tokens["refresh_token"]))
    assert_unauthorized(client.post(LOGOUT, headers=bearer(tokens["refresh_token"])))
    assert_unauthorized(refresh(client, tokens["access_token"]))
    # Neither mistake harmed the login.
    assert me(client, tokens["access_token"]).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_tampered_tokens_are_401(client, user, admin):
    tokens = login(client, user.username)
    header, payload, signature = tokens["access_token"].split(".")

    claims = json.loads(_unb64(payload))
    claims["sub"] = str(admin.id)
    claims["role"] = "admin"
    forged_payload = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"

    raw_signature = bytearray(_unb64(signature))
    raw_signature[0] ^= 0xFF
    forged_signature = f"{header}.{payload}.{_b64(bytes(raw_signature))}"

    unsigned_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    unsigned = f"{unsigned_header}.{payload}."

    for token in (forged_payload, forged_signature, unsigned, "not-a-jwt", tokens["access_token"][:-20]):
        problem = assert_unauthorized(me(client, token))
        assert "Traceback" not in json.dumps(problem)
    assert_unauthorized(client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    assert_unauthorized(client.get(ME, headers={"Authorization": "Bearer"}))
    assert_unauthorized(client.get(ME))
    # The genuine token still works.
    assert me(client, tokens["access_token"]).status_code == 200


def test_expired_access_token_is_401(app, client, user):
    tokens = login(client, user.username)
    with app.app_context():
        family = decode_token(tokens["access_token"])["fam"]
        expired = create_access_token(
            identity=str(user.id),
            additional_claims={"fam": family, "role": "customer"},
            expires_delta=timedelta(seconds=-10),
        )
        # Same login, same claims, still in date: accepted, so only the expiry differs.
        fresh = create_access_token(
            identity=str(user.id),
            additional_claims={"fam": family, "role": "customer"},
            expires_delta=timedelta(minutes=5),
        )
    assert me(client, fresh).status_code == 200
    problem = assert_unauthorized(me(client, expired))
    assert "expired" in problem["detail"].lower()


def test_a_token_is_verified_once_and_remembered_until_it_expires(app, client, user, monkeypatch):
    """core/tokens.py: the library verifies a token the first time this process sees it; the
    same string is then accepted without verifying it again, until its own expiry, after which
    it is refused as expired like any other. A forged variant of it is never taken for it."""
    decoded: list[str] = []
    verify = token_memory.decode_token

    def counted(encoded: str, *args, **kwargs):
        decoded.append(encoded)
        return verify(encoded, *args, **kwargs)

    monkeypatch.setattr(token_memory, "decode_token", counted)
    access = login(client, user.username)["access_token"]
    with app.app_context():
        family = decode_token(access)["fam"]
        short = create_access_token(
            identity=str(user.id), additional_claims={"fam": family}, expires_delta=timedelta(seconds=2)
        )
        expires = decode_token(short)["exp"]
    for _ in range(3):
        assert me(client, access).status_code == 200
        assert me(client, short).status_code == 200
    assert decoded == [access, short]

    header, payload, signature = short.split(".")
    assert_unauthorized(me(client, f"{header}.{payload}.{signature[:-2]}AA"))
    time.sleep(max(0.0, expires + 0.2 - time.time()))
    problem = assert_unauthorized(me(client, short))
    assert "expired" in problem["detail"].lower()
    assert me(client, access).status_code == 200
    assert decoded.count(short) == 2 and decoded.count(access) == 1, decoded


def test_a_remembered_token_of_an_ended_login_is_refused(client, user):
    """Remembering a verified token never outlives its login: the login check runs on every
    request, so a token used a moment ago is refused once its login is revoked."""
    access = login(client, user.username)["access_token"]
    assert me(client, access).status_code == 200
    assert client.post(LOGOUT, headers=bearer(access)).status_code == 204
    problem = assert_unauthorized(me(client, access))
    assert "revoked" in problem["detail"].lower()


def test_token_without_a_login_family_is_401(app, client, user):
    with app.app_context():
        orphan = create_access_token(identity=str(user.id))
        unknown_family = create_access_token(identity=str(user.id), additional_claims={"fam": "0" * 32})
    assert_unauthorized(me(client, orphan))
    assert_unauthorized(me(client, unknown_family))


def test_token_of_another_users_login_is_401(app, client, user):
    other = UserFactory()
    tokens = login(client, user.username)
    with app.app_context():
        family = decode_token(tokens["access_token"])["fam"]
        borrowed = create_access_token(identity=str(other.id), additional_claims={"fam": family})
    assert_unauthorized(me(client, borrowed))


# -- logout ------------------------------------------------------------------------------


def test_logout_revokes_access_and_refresh_tokens(client, user):
    tokens = login(client, user.username)
    other_login = login(client, user.username)

    response = client.post(LOGOUT, headers=bearer(tokens["access_token"]))
    assert response.status_code == 204
    assert response.get_data() == b""

    assert_unauthorized(me(client, tokens["access_token"]))
    assert_unauthorized(refresh(client, tokens["refresh_token"]))
    assert_unauthorized(client.post(LOGOUT, headers=bearer(tokens["access_token"])))
    # Only that login ended.
    assert me(client, other_login["access_token"]).status_code == 200


def test_logout_without_token_is_401(client):
    assert_unauthorized(client.post(LOGOUT))


# -- deactivated accounts ----------------------------------------------------------------


def test_deactivated_user_is_locked_out(client, user):
    tokens = login(client, user.username)
    user.is_active = False
    db.session.commit()

    same_id = {"X-Request-ID": "deactivated-check"}
    refused = assert_unauthorized(
        client.post(LOGIN, json={"username": user.username, "password": PASSWORD}, headers=same_id)
    )
    # No hint that the account exists but is disabled.
    unknown = assert_unauthorized(
        client.post(LOGIN, json={"username": "nobody-here", "password": PASSWORD}, headers=same_id)
    )
    assert refused == unknown

    assert_unauthorized(me(client, tokens["access_token"]))
    assert_unauthorized(refresh(client, tokens["refresh_token"]))
