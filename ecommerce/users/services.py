"""Profiles and the admin's view of accounts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select

from ecommerce.auth.services import (
    forget_checked_logins,
    hash_password,
    register_user,
    revoke_other_logins,
    up_to_date,
    verify_password,
)
from ecommerce.core.db.session import conflict_on_duplicate
from ecommerce.errors import NotFound, ValidationFailed
from ecommerce.extensions import db
from ecommerce.users.models import Role, User


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


def _user_named(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"No user named {username}.")
    return user


def list_users(filters: dict[str, Any], page: int, page_size: int) -> tuple[list[User], int]:
    statement = select(User)
    if "role" in filters:
        statement = statement.where(User.role == filters["role"])
    if "q" in filters:
        pattern = "%" + filters["q"].replace("%", r"\%").replace("_", r"\_") + "%"
        statement = statement.where(
            or_(User.username.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\"))
        )
    total = db.session.scalar(select(func.count()).select_from(statement.subquery()))
    users = db.session.scalars(
        statement.order_by(User.id).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return list(users), total


def update_profile(user: User, changes: dict[str, Any], current_family_id: str | None) -> User:
    """Change one's own profile; a new password needs the current one and ends other logins."""
    up_to_date(user)  # the password and email as they are now, not as a login check saw them
    if "password" in changes:
        if not verify_password(user.password_hash, changes.get("current_password") or ""):
            raise ValidationFailed({"current_password": ["The current password is not correct."]})
        user.password_hash = hash_password(changes["password"])
        revoke_other_logins(user.id, current_family_id, reason="password_change")
    if "email" in changes:
        user.email = changes["email"].strip().lower()
    for field in ("first_name", "last_name"):
        if field in changes:
            setattr(user, field, changes[field])
    with conflict_on_duplicate("That email is already registered."):
        db.session.commit()
    forget_checked_logins(user_id=user.id)
    return user


def create_admin(username: str, email: str, password: str) -> User:
    """Create an admin account (the CLI's only way to make one)."""
    return register_user(username=username, email=email, password=password, role=Role.ADMIN)


def set_role(username: str, role: Role) -> User:
    """Give an account a role; its live tokens carry it from their next request (roles are read
    from the database with the login check, at most LOGIN_CHECK_SECONDS old)."""
    user = _user_named(username)
    user.role = role
    db.session.commit()
    forget_checked_logins(user_id=user.id)
    return user


def deactivate_user(username: str) -> User:
    """Block an account: it can no longer log in, and every login it has ends now."""
    user = _user_named(username)
    user.is_active = False
    revoke_other_logins(user.id, None, reason="deactivated")
    db.session.commit()
    forget_checked_logins(user_id=user.id)
    return user
