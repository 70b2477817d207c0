"""Register, log in, refresh, log out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, request
from flask.views import MethodView

from ecommerce.auth import services
from ecommerce.auth.schemas import LoginSchema, RegisterSchema, TokenSchema
from ecommerce.core import tokens
from ecommerce.core.blueprint import Blueprint
from ecommerce.core.ratelimit import route_limit
from ecommerce.core.tokens import current_user, token_claims
from ecommerce.errors import problem
from ecommerce.extensions import client_ip, jwt, limiter
from ecommerce.users.schemas import UserSchema

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and tokens")


def auth_rate_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


def account_key() -> str:
    """Rate-limit key for the account a request names, so one account can't be sprayed from
    many addresses."""
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        name = body.get("email") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        return f"ip:{client_ip()}"
    return "account:" + name.strip().lower()[:254]


per_ip = route_limit(limiter, auth_rate_limit, key_func=client_ip, scope="auth-ip")
per_account = route_limit(limiter, auth_rate_limit, key_func=account_key, scope="auth-account")


@blp.route("/register/")
class RegisterView(MethodView):
    @per_ip
    @per_account
    @blp.arguments(RegisterSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(409, description="Username or email taken")
    @blp.alt_response(429, description="Too many attempts")
    def post(self, data):
        """Register a customer account"""
        return services.register_user(**data)


@blp.route("/login/")
class LoginView(MethodView):
    @per_ip
    @per_account
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, description="Bad credentials")
    @blp.alt_response(429, description="Too many attempts")
    def post(self, data):
        """Log in with username (or email) and password"""
        return services.log_in(data["username"], data["password"])


@blp.route("/refresh/")
class RefreshView(MethodView):
    @blp.auth(refresh=True)
    @blp.response(200, TokenSchema)
    def post(self):
        """Swap a refresh token for a new access token and a rotated refresh token"""
        claims = token_claims()
        return services.rotate_refresh_token(current_user, claims.get("fam"), claims["jti"])


@blp.route("/logout/")
class LogoutView(MethodView):
    @blp.auth()
    @blp.response(204)
    def post(self):
        """Revoke this login's access and refresh tokens on every instance"""
        services.revoke_login(token_claims()["fam"], reason="logout")


# -- the login check (core/tokens.py) and flask-jwt-extended's answers: problem+json on every
# failure --------------------------------------------------------------------------------------


@tokens.login_loader
def _live_login(claims: Mapping[str, Any]):
    # One query per request, or none while the login is remembered (LOGIN_CHECK_SECONDS). A
    # refresh is always checked in the database: it rotates the login, and a login revoked
    # elsewhere must not pass as live there (its rotation would then look like token reuse).
    return services.load_active_login(
        claims.get("fam"), claims["sub"], remembered=claims.get("type") != "refresh"
    )


def _unauthorized(detail: str):
    return problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})


@jwt.unauthorized_loader
def _missing_token(reason: str):
    return _unauthorized("A bearer token is required.")


@jwt.invalid_token_loader
def _invalid_token(reason: str):
    return _unauthorized("The token is invalid.")


@jwt.expired_token_loader
def _expired_token(_header: dict, _payload: dict):
    return _unauthorized("The token has expired.")


@jwt.revoked_token_loader
def _revoked_token(_header: dict, _payload: dict):
    return _unauthorized("The token has been revoked.")


@jwt.user_lookup_error_loader
def _unknown_user(_header: dict, _payload: dict):
    return _unauthorized("The token's user no longer exists.")


@jwt.needs_fresh_token_loader
def _needs_fresh(_header: dict, _payload: dict):
    return _unauthorized("A fresh token is required.")
