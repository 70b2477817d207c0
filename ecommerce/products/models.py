"""Products, with the rating aggregate kept on the row."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, TimestampMixin
from ecommerce.extensions import db


class Product(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "products"

    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    stock_quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # RESTRICT: a category that still holds products cannot be deleted.
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="RESTRICT"), nullable=False)
    # The aggregate is maintained by the review service with atomic increments on this row,
    # so it stays exact when many users review at once. rating_sum makes it O(1).
    rating_sum: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    rating_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    rating_avg: Mapped[Decimal] = mapped_column(
        Numeric(3, 2), nullable=False, default=Decimal("0"), server_default="0"
    )

    # The main picture first. Lists load them for a whole page at once (selectinload).
    images = relationship(
        "ProductImage",
        order_by="(ProductImage.position, ProductImage.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint("stock_quantity >= 0", name="stock_non_negative"),
        CheckConstraint("rating_count >= 0", name="rating_count_non_negative"),
        CheckConstraint("rating_avg >= 0 AND rating_avg <= 5", name="rating_avg_range"),
        # category filter (+ price range / price sort inside a category)
        Index("ix_products_category_id_price", "category_id", "price"),
        # global sorts; the id tiebreak keeps pages stable
        Index("ix_products_price_id", "price", "id"),
        Index("ix_products_name_id", "name", "id"),
        Index("ix_products_created_at_id", "created_at", "id"),
        Index("ix_products_rating_avg_id", "rating_avg", "id"),
    )


class ProductImage(IdMixin, TimestampMixin, db.Model):
    """A picture of a product: the re-encoded file and its thumbnail, by their content-hashed
    names in the media storage (ecommerce/core/media/). The files are not the database's: a
    deleted row leaves its files to ``flask media prune``, which removes those no row names."""

    __tablename__ = "product_images"

    # CASCADE: the pictures go with their product.
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    thumbnail_name: Mapped[str] = mapped_column(String(255), nullable=False)
    thumbnail_width: Mapped[int] = mapped_column(Integer, nullable=False)
    thumbnail_height: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        CheckConstraint("position >= 0", name="position_non_negative"),
        CheckConstraint("width > 0 AND height > 0", name="size_positive"),
        # a product's pictures in order (the detail, a list page's selectinload)
        Index("ix_product_images_product_id_position", "product_id", "position"),
        # prune: is a file still named by a row?
        Index("ix_product_images_file_name", "file_name"),
        Index("ix_product_images_thumbnail_name", "thumbnail_name"),
    )


def search_document():
    """The text that ``q`` searches. The GIN index below is built on exactly this expression,
    so PostgreSQL can use it."""
    from sqlalchemy import func, literal_column

    return func.to_tsvector(
        literal_column("'english'::regconfig"),
        Product.name.op("||")(literal_column("' '")).op("||")(Product.description),
    )


# Full-text search is PostgreSQL's; SQLite falls back to LIKE and gets no such index.
Index("ix_products_search", search_document(), postgresql_using="gin").ddl_if(dialect="postgresql")
