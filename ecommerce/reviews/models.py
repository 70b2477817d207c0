"""Product reviews: one per user and product."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, TimestampMixin
from ecommerce.extensions import db


class Review(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "reviews"

    # CASCADE on product: a deleted product's reviews go with it (its aggregate goes too).
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    # RESTRICT on user: deleting a reviewer must go through a service that fixes aggregates.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=False)
    rating: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")

    author = relationship("User", lazy="joined", innerjoin=True)

    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        UniqueConstraint("user_id", "product_id", name="uq_reviews_user_id_product_id"),
        # a product's reviews, newest first; id breaks ties so a page stops after page_size rows
        Index("ix_reviews_product_id_created_at_id", "product_id", "created_at", "id"),
    )
