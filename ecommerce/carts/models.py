"""Shopping carts: one per user, one line per product."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, TimestampMixin
from ecommerce.extensions import db

MAX_LINE_QUANTITY = 10_000  # units of one product in one cart line


class ShoppingCart(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "shopping_carts"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    items = relationship("CartItem", order_by="CartItem.id", cascade="all, delete-orphan", lazy="selectin")

    @property
    def total_amount(self) -> Decimal:
        return sum((item.line_total for item in self.items), Decimal("0.00"))


class CartItem(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "cart_items"

    cart_id: Mapped[int] = mapped_column(ForeignKey("shopping_carts.id", ondelete="CASCADE"), nullable=False)
    # CASCADE: a product taken off the catalog leaves the carts it was in.
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)

    product = relationship("Product", lazy="joined", innerjoin=True)

    @property
    def line_total(self) -> Decimal:
        return self.product.price * self.quantity

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        # An add is one statement that commits by itself (carts/services.py): the bound is
        # the database's to enforce (migration 0010).
        CheckConstraint(f"quantity <= {MAX_LINE_QUANTITY}", name=f"quantity_at_most_{MAX_LINE_QUANTITY}"),
        UniqueConstraint("cart_id", "product_id", name="uq_cart_items_cart_id_product_id"),
        Index("ix_cart_items_product_id", "product_id"),
    )
