"""The category tree (adjacency list via parent_id)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, TimestampMixin
from ecommerce.extensions import db


class Category(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "categories"

    name: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # RESTRICT: a category with children cannot be deleted; the service answers 409 first.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), nullable=True
    )

    children = relationship("Category", order_by="Category.name", lazy="select")

    __table_args__ = (
        UniqueConstraint("parent_id", "name", name="uq_categories_parent_id_name"),
        Index("ix_categories_parent_id", "parent_id"),
        # The constraint above never fires for top-level categories (NULLs are distinct in a
        # UNIQUE), so their names get a partial unique index of their own.
        Index(
            "uq_categories_root_name",
            "name",
            unique=True,
            postgresql_where=text("parent_id IS NULL"),
            sqlite_where=text("parent_id IS NULL"),
        ),
    )
