"""Login sessions: one row per login, the family of every token that login rotates through."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.core.models import UTCDateTime, utcnow
from ecommerce.extensions import db


def new_id() -> str:
    return uuid.uuid4().hex


class AuthSession(db.Model):
    """A login. Every access and refresh token carries its id (the ``fam`` claim).

    Refresh rotation moves ``refresh_jti`` to the new token; presenting any other refresh
    token of the family is reuse, which revokes the family. Revocation is a row update in the
    database, so every app instance sees it at once.
    """

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    refresh_jti: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (Index("ix_auth_sessions_user_id", "user_id"),)
