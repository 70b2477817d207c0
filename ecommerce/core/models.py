"""Model mixins and column types shared by every resource."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import DateTime, Enum, Integer, TypeDecorator, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored naive
    in UTC and given their zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class IdMixin:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        nullable=False,
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
    )


class StrEnum(enum.StrEnum):
    """A status or role stored by value (a VARCHAR with a CHECK constraint)."""

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


def enum_column_type(enum_cls: type[StrEnum], name: str):
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(v) for v in enum_cls.values()) + 8,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def dialect_insert(model, bind_dialect: str):
    """INSERT with ON CONFLICT support, for PostgreSQL or SQLite (both spell it the same)."""
    return (postgresql_insert if bind_dialect == "postgresql" else sqlite_insert)(model)


def owned_row_id(model, user_id: int) -> int:
    """The id of the user's one ``model`` row (their cart, their wishlist), made on first use.

    Safe when two first requests race: the insert yields to the UNIQUE (user_id) constraint.
    """
    session = db.session
    row_id = session.scalar(select(model.id).where(model.user_id == user_id))
    if row_id is not None:
        return row_id
    session.execute(
        dialect_insert(model, session.get_bind().dialect.name)
        .values(user_id=user_id, created_at=utcnow(), updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    session.commit()
    return session.scalar(select(model.id).where(model.user_id == user_id))
