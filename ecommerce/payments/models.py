"""Payments. Each carries the idempotency key sent to the gateway, so a charge happens once."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import IdMixin, StrEnum, TimestampMixin, enum_column_type
from ecommerce.extensions import db


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class PaymentMethod(StrEnum):
    CARD = "card"
    PAYPAL = "paypal"
    BANK_TRANSFER = "bank_transfer"


class Payment(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "payments"

    # RESTRICT: a payment record outlives nothing it refers to.
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), nullable=False)
    payment_method: Mapped[PaymentMethod] = mapped_column(
        enum_column_type(PaymentMethod, "payment_method"), nullable=False
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    status: Mapped[PaymentStatus] = mapped_column(
        enum_column_type(PaymentStatus, "payment_status"),
        nullable=False,
        default=PaymentStatus.PENDING,
        server_default=PaymentStatus.PENDING.value,
    )
    # Sent to the gateway with every attempt: the gateway charges once per key.
    idempotency_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    token: Mapped[str] = mapped_column(String(255), nullable=False, default="", server_default="")
    transaction_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    refund_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")

    order = relationship("Order", lazy="joined", innerjoin=True, viewonly=True)

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        Index("ix_payments_order_id", "order_id"),
        # the sweeper's look-up of payments still pending (or owed a refund)
        Index("ix_payments_status_updated_at", "status", "updated_at"),
        # At most one payment per order that is pending or succeeded: a second is refused by
        # the database itself, whatever the race.
        Index(
            "uq_payments_order_id_active",
            "order_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'succeeded')"),
            sqlite_where=text("status IN ('pending', 'succeeded')"),
        ),
    )
