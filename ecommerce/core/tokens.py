"""The bearer token of a request: verified by flask-jwt-extended once per token and process, then
remembered until it expires; the login behind it checked on every request.

``verify_request_token`` is what ``Blueprint.auth`` runs. It reads ``Authorization: Bearer <JWT>``,
has the token verified by ``flask_jwt_extended.decode_token`` (signature, expiry, not-before),
checks its type (access or refresh) and asks the login check (``login_loader``, registered by
the auth package) for the user of the live login. The request's token and user are then
``current_user``, ``token_claims()`` and ``token_user_id()``.

Why a memory of verified tokens: a client sends the same access token with every request for
its lifetime (15 minutes), and verifying it is pure CPU, the same work each time. The library
decodes a token three times per verification (twice unverified, for its key callback, then
verified), and PyJWT checks each segment of each decode character by character in Python: 166 µs
per request of the 3 ms a checkout benchmark's request costs a worker (docs/performance_tuning.md,
"Tokens verified once"). A remembered token is the exact string that passed verification, kept
no longer than its own ``exp``, so it is accepted exactly as long as verifying it again would
accept it. Revocation does not depend on it: the login check runs on every request.

What the library's ``verify_jwt_in_request`` does besides decoding is done here too, in the same
way (the header's format, the token's type, the same exceptions, which the library's error
handlers turn into the auth package's problem+json answers); its ``current_user`` and
``get_jwt`` read state that only its own verification sets, so this module has its own.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from cachetools import TLRUCache
from flask import current_app, g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import (
    InvalidHeaderError,
    NoAuthorizationError,
    RevokedTokenError,
    WrongTokenError,
)
from werkzeug.local import LocalProxy

# Tokens remembered per process: one per client active within a token's lifetime; beyond it the
# least recently used are forgotten (and verified again when they come back).
MEMORY_SIZE = 10_000
_MEMORY = "verified_tokens"  # app.extensions: (lock, TLRUCache)
_G_KEY = "ecommerce_token"

LoginLoader = Callable[[Mapping[str, Any]], Any]
_login_loader: LoginLoader | None = None


class VerifiedToken(NamedTuple):
    claims: Mapping[str, Any]  # read-only: one remembered token's claims serve many requests
    user: Any


def login_loader(func: LoginLoader) -> LoginLoader:
    """Register the login check: ``func(claims)`` is the user of the token's live login, or
    None when the login is revoked or expired or the user is gone (401)."""
    global _login_loader
    _login_loader = func
    return func


def verify_request_token(*, refresh: bool = False) -> None:
    """Verify the request's bearer token (a refresh token if ``refresh``, else an access token)
    and the login behind it; raise the library's exception for what is wrong."""
    claims = _verified(_bearer_token())
    expected = "refresh" if refresh else "access"
    if claims.get("type") != expected:
        raise WrongTokenError(f"Only {expected} tokens are allowed")
    if _login_loader is None:
        raise RuntimeError("No login_loader is registered (ecommerce/auth/routes.py registers it).")
    user = _login_loader(claims)
    if user is None:
        raise RevokedTokenError({}, claims)
    setattr(g, _G_KEY, VerifiedToken(claims, user))


def _verified_token() -> VerifiedToken:
    token = g.get(_G_KEY)
    if token is None:
        raise RuntimeError("No bearer token was verified for this request (Blueprint.auth).")
    return token


current_user: Any = LocalProxy(lambda: _verified_token().user)


def token_claims() -> Mapping[str, Any]:
    """The claims of the request's verified token."""
    return _verified_token().claims


def token_user_id() -> int | None:
    """The user id of the request's verified token; None when none was verified."""
    token = g.get(_G_KEY)
    return None if token is None else int(token.claims["sub"])


def _bearer_token() -> str:
    """The JWT of ``Authorization: Bearer <JWT>`` (the header may list other schemes, comma
    separated, as the library accepts it)."""
    name = current_app.config.get("JWT_HEADER_NAME", "Authorization")
    scheme = current_app.config.get("JWT_HEADER_TYPE", "Bearer")
    value = request.headers.get(name, "").strip().strip(",")
    if not value:
        raise NoAuthorizationError(f"Missing {name} Header")
    bearers = [part for part in re.split(r",\s*", value) if part and part.split()[0] == scheme]
    if len(bearers) != 1:
        raise NoAuthorizationError(f"Missing '{scheme}' type in '{name}' header.")
    parts = bearers[0].split()
    if len(parts) != 2:
        raise InvalidHeaderError(f"Bad {name} header. Expected '{name}: {scheme} <JWT>'")
    return parts[1]


def _verified(encoded: str) -> Mapping[str, Any]:
    """The claims of ``encoded``: remembered, or verified by the library now (which raises for a
    token that is not valid now) and remembered until its ``exp``."""
    lock, memory = _memory()
    with lock:
        claims = memory.get(encoded)
    if claims is not None:
        return claims
    claims = MappingProxyType(decode_token(encoded))  # shared by every request that sends it
    if "exp" in claims:  # a token that never expires is verified every time
        with lock:
            memory[encoded] = claims
    return claims


def _memory() -> tuple[threading.Lock, TLRUCache]:
    extensions = current_app.extensions
    if _MEMORY not in extensions:
        # Expiry on the wall clock, the one a token's exp is on; read as the entry is read.
        memory = TLRUCache(MEMORY_SIZE, ttu=lambda _token, claims, _now: claims["exp"], timer=time.time)
        extensions.setdefault(_MEMORY, (threading.Lock(), memory))
    return extensions[_MEMORY]
