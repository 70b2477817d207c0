"""Wishlists: one per user, one line per product."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, TimestampMixin, UTCDateTime, utcnow
from ecommerce.extensions import db


class Wishlist(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "wishlists"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    items = relationship(
        "WishlistItem", order_by="WishlistItem.id", cascade="all, delete-orphan", lazy="selectin"
    )


class WishlistItem(IdMixin, db.Model):
    __tablename__ = "wishlist_items"

    wishlist_id: Mapped[int] = mapped_column(ForeignKey("wishlists.id", ondelete="CASCADE"), nullable=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("wishlist_id", "product_id", name="uq_wishlist_items_wishlist_id_product_id"),
        Index("ix_wishlist_items_product_id", "product_id"),
    )
