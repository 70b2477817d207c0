"""Registration, login, refresh-token rotation with reuse detection, logout."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TLRUCache
from flask import current_app, g
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from sqlalchemy import Select, bindparam, func, or_, select, update

from ecommerce.auth.models import AuthSession, new_id
from ecommerce.core.db.autocommit import alone
from ecommerce.core.db.session import conflict_on_duplicate
from ecommerce.core.models import utcnow
from ecommerce.errors import Conflict, Unauthorized
from ecommerce.extensions import db
from ecommerce.users.models import Role, User

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "Invalid username or password."
ALREADY_REGISTERED = "That username or email is already registered."


def _hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config.get("PASSWORD_HASH_TIME_COST", 3),
        memory_cost=config.get("PASSWORD_HASH_MEMORY_KIB", 65536),
        parallelism=config.get("PASSWORD_HASH_PARALLELISM", 2),
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _dummy_hash() -> str:
    # Verified against when no user matches, so an unknown name costs what a wrong
    # password costs: no user enumeration by timing.
    extension = current_app.extensions.setdefault("ecommerce_dummy_hash", {})
    if "hash" not in extension:
        extension["hash"] = hash_password(new_id())
    return extension["hash"]


def register_user(
    *,
    username: str,
    email: str,
    password: str,
    first_name: str = "",
    last_name: str = "",
    role: Role = Role.CUSTOMER,
) -> User:
    """Create an account; a taken username or email is a Conflict."""
    email = email.strip().lower()
    taken = db.session.scalar(
        select(func.count()).select_from(User).where(or_(User.username == username, User.email == email))
    )
    if taken:
        raise Conflict(ALREADY_REGISTERED)
    user = User(
        username=username,
        email=email,
        password_hash=hash_password(password),
        first_name=first_name,
        last_name=last_name,
        role=role,
    )
    db.session.add(user)
    with conflict_on_duplicate(ALREADY_REGISTERED):  # lost a race with another registration
        db.session.commit()
    return user


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


def _issue_tokens(user: User, family_id: str) -> tuple[TokenPair, str]:
    claims = {"fam": family_id, "role": user.role.value}
    identity = str(user.id)
    access = create_access_token(identity=identity, additional_claims=claims)
    refresh = create_refresh_token(identity=identity, additional_claims=claims)
    expires_in = int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())
    refresh_jti = decode_token(refresh)["jti"]
    return TokenPair(access, refresh, expires_in), refresh_jti


def log_in(login: str, password: str) -> TokenPair:
    """Check credentials and open a login session (a token family)."""
    login = login.strip()
    user = db.session.scalar(select(User).where(or_(User.username == login, User.email == login.lower())))
    if user is None:
        verify_password(_dummy_hash(), password)
        raise Unauthorized(BAD_CREDENTIALS)
    if not verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthorized(BAD_CREDENTIALS)
    family_id = new_id()
    pair, refresh_jti = _issue_tokens(user, family_id)
    db.session.add(
        AuthSession(
            id=family_id,
            user_id=user.id,
            refresh_jti=refresh_jti,
            expires_at=utcnow() + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
        )
    )
    db.session.commit()
    return pair


def rotate_refresh_token(user: User, family_id: str, presented_jti: str) -> TokenPair:
    """Swap a refresh token for a new pair; replaying a used one revokes the whole login."""
    pair, new_jti = _issue_tokens(user, family_id)
    # One conditional UPDATE: of two concurrent refreshes with the same token, exactly one
    # wins; the other finds the jti moved on and is treated as reuse.
    rotated = db.session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == family_id,
            AuthSession.refresh_jti == presented_jti,
            AuthSession.revoked_at.is_(None),
        )
        .values(refresh_jti=new_jti)
    ).rowcount
    if rotated == 1:
        db.session.commit()
        return pair
    revoke_login(family_id, reason="refresh_reuse")
    # A security event: someone holds a copy of this refresh token (theft, or a buggy client).
    log.warning("refresh token reuse: login %s of user %s revoked", family_id, user.id)
    raise Unauthorized("This refresh token was already used; the login has been revoked.")


def revoke_login(family_id: str, *, reason: str) -> None:
    """Revoke every access and refresh token of one login."""
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.id == family_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    db.session.commit()
    forget_checked_logins(family_id=family_id)


def revoke_other_logins(user_id: int, keep_family_id: str | None, *, reason: str) -> None:
    statement = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep_family_id is not None:
        statement = statement.where(AuthSession.id != keep_family_id)
    db.session.execute(statement.values(revoked_at=utcnow(), revoked_reason=reason))
    # The caller commits, then forgets this user's remembered logins (forget_checked_logins).


class _CheckedLogins:
    """Logins this process has checked in the last LOGIN_CHECK_SECONDS, one store per app:
    (family, user id) -> (until, the user as loaded then, detached). Each request gets its own
    copy in its session (``merge(load=False)``: no query). A login revoked or a user deactivated
    through another process is refused here once its entry runs out; one revoked through this
    process is forgotten at once."""

    def __init__(self) -> None:
        self.entries: TLRUCache = TLRUCache(maxsize=50_000, ttu=lambda _key, value, _now: value[0])
        self.lock = threading.Lock()  # cachetools' caches are not thread-safe
        # Bumped by every forget: a check whose query ran across a forget (a logout committed
        # meanwhile by another request of this process) does not store what it read before it.
        self.generation = 0


def _checked_logins() -> _CheckedLogins:
    store = current_app.extensions.get("checked_logins")
    if store is None:
        store = current_app.extensions.setdefault("checked_logins", _CheckedLogins())
    return store


def forget_checked_logins(*, family_id: str | None = None, user_id: int | None = None) -> None:
    store = _checked_logins()
    with store.lock:
        store.generation += 1
        for key in [key for key in store.entries if key[0] == family_id or key[1] == user_id]:
            store.entries.pop(key, None)


def up_to_date(user: User) -> User:
    """The request's user as the database has it now: read again if the login check answered
    from this process's memory (LOGIN_CHECK_SECONDS), for the answers that show or change it."""
    if g.pop("login_from_memory", False):
        db.session.refresh(user)
    return user


@cache
def _login_statement() -> Select:
    """The login check's query, built once with bound parameters: every authenticated request
    runs it, and building it per request cost more than its cache key look-up."""
    return (
        select(User, AuthSession.revoked_at, AuthSession.expires_at)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(AuthSession.id == bindparam("family_id"), User.id == bindparam("user_id"))
    )


def load_active_login(family_id: str | None, user_id: str, *, remembered: bool = True) -> User | None:
    """The user of a live (not revoked, not expired) login, or None. One query per request, or
    none for a login this process checked less than LOGIN_CHECK_SECONDS ago."""
    if not family_id:
        return None
    seconds = current_app.config["LOGIN_CHECK_SECONDS"] if remembered else 0
    key = (family_id, int(user_id))
    store = _checked_logins() if seconds > 0 else None
    if store is not None:
        with store.lock:
            checked = store.entries.get(key)
            generation = store.generation
        if checked is not None:
            g.login_from_memory = True
            return db.session.merge(checked[1], load=False)
    # The request's first statement, most often: alone, it needs no BEGIN of its own, and a
    # write that follows it in a statement of its own (add to cart, checkout) none either.
    with alone(db.session, writes=False):
        params = {"family_id": family_id, "user_id": int(user_id)}
        row = db.session.execute(_login_statement(), params).first()
    if row is None:
        return None
    user, revoked_at, expires_at = row
    now = utcnow()
    if revoked_at is not None or expires_at <= now or not user.is_active:
        return None
    if store is not None:
        # The session's copy is the one kept (detached); the request gets a fresh copy of it.
        until = time.monotonic() + min(seconds, (expires_at - now).total_seconds())
        db.session.expunge(user)
        with store.lock:
            if store.generation == generation:
                store.entries[key] = (until, user)
        return db.session.merge(user, load=False)
    return user


def purge_expired_logins(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete login sessions expired or revoked for longer than ``older_than``."""
    cutoff: datetime = utcnow() - older_than
    result = db.session.execute(
        AuthSession.__table__.delete().where(
            or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff)
        )
    )
    db.session.commit()
    return result.rowcount
