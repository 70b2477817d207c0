"""The carrier network: zones, and the directed legs carriers offer between them."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ecommerce.core.models import IdMixin, TimestampMixin
from ecommerce.extensions import db

# A zone code: 1 to 20 capital letters, digits and hyphens (\Z: "$" would let a final newline in).
ZONE_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,19}\Z"


class ShippingZone(IdMixin, TimestampMixin, db.Model):
    """A place goods are shipped to; a warehouse zone is also where they are shipped from."""

    __tablename__ = "shipping_zones"

    code: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    is_warehouse: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class ShippingLeg(IdMixin, TimestampMixin, db.Model):
    """One carrier's offer on a lane, from one zone to another. A lane may have several (a cheap
    slow carrier and a fast dear one); a negative cost is a rebate. The service refuses a leg that
    would close a cycle of negative total cost (ecommerce/shipping/routing.py)."""

    __tablename__ = "shipping_legs"

    # RESTRICT: a zone that a leg still uses cannot be deleted; the service answers 409 first.
    from_zone_id: Mapped[int] = mapped_column(
        ForeignKey("shipping_zones.id", ondelete="RESTRICT"), nullable=False
    )
    to_zone_id: Mapped[int] = mapped_column(
        ForeignKey("shipping_zones.id", ondelete="RESTRICT"), nullable=False
    )
    cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    days: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        CheckConstraint("days >= 1", name="days_positive"),
        CheckConstraint("from_zone_id <> to_zone_id", name="not_a_loop"),
        # the delete of a zone asks whether any leg still uses it, from either end
        Index("ix_shipping_legs_from_zone_id", "from_zone_id"),
        Index("ix_shipping_legs_to_zone_id", "to_zone_id"),
    )
