"""Accounts."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.core.models import IdMixin, StrEnum, TimestampMixin, enum_column_type
from ecommerce.extensions import db


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


class User(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Stored lower-cased by the service, so uniqueness is case-insensitive.
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    first_name: Mapped[str] = mapped_column(String(100), nullable=False, default="", server_default="")
    last_name: Mapped[str] = mapped_column(String(100), nullable=False, default="", server_default="")
    role: Mapped[Role] = mapped_column(
        enum_column_type(Role, "user_role"),
        nullable=False,
        default=Role.CUSTOMER,
        server_default=Role.CUSTOMER.value,
    )
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    # Kept by checkout in the order's own transaction (orders are never deleted), so the total
    # of a customer's order history is a primary-key lookup, not a count over the history.
    orders_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"
