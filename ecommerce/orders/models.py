"""Orders and their lines. Lines snapshot the unit price paid and the product's name."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ecommerce.core.models import (
    IdMixin,
    StrEnum,
    TimestampMixin,
    UTCDateTime,
    enum_column_type,
    utcnow,
)
from ecommerce.extensions import db
from ecommerce.payments.models import PaymentStatus


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


# The order status machine: every legal move, in one place next to the statuses.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


class Order(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "orders"

    # RESTRICT: orders are financial records; a user who has ordered cannot be hard-deleted.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=False)
    order_status: Mapped[OrderStatus] = mapped_column(
        enum_column_type(OrderStatus, "order_status"),
        nullable=False,
        default=OrderStatus.PENDING,
        server_default=OrderStatus.PENDING.value,
    )
    total_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    shipping_address: Mapped[str] = mapped_column(Text, nullable=False, default="", server_default="")
    # The shipping chosen at checkout (a snapshot of the quote: a later change of the carrier
    # network changes no order). None / 0.00 / None: an order placed without shipping.
    shipping_method: Mapped[str | None] = mapped_column(String(20), nullable=True)
    shipping_cost: Mapped[Decimal] = mapped_column(
        Numeric(12, 2), nullable=False, default=Decimal("0.00"), server_default="0"
    )
    shipping_route: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)

    items = relationship("OrderItem", order_by="OrderItem.id", cascade="all, delete-orphan")
    payments = relationship("Payment", order_by="Payment.id", viewonly=True)
    events = relationship("OrderEvent", order_by="OrderEvent.id", viewonly=True)

    def can_move_to(self, status: OrderStatus) -> bool:
        return status in ORDER_TRANSITIONS[self.order_status]

    __table_args__ = (
        CheckConstraint("total_amount >= 0", name="total_non_negative"),
        CheckConstraint("shipping_cost >= 0", name="shipping_cost_non_negative"),
        # a user's orders, newest first (id breaks ties, so a page reads only its rows)
        Index("ix_orders_user_id_created_at_id", "user_id", db.text("created_at DESC"), db.text("id DESC")),
        # the admin's status filter, newest first
        Index(
            "ix_orders_order_status_created_at_id",
            "order_status",
            db.text("created_at DESC"),
            db.text("id DESC"),
        ),
    )


class OrderItem(IdMixin, TimestampMixin, db.Model):
    __tablename__ = "order_items"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    # SET NULL: a product may leave the catalog; the line keeps its name and price paid.
    product_id: Mapped[int | None] = mapped_column(
        ForeignKey("products.id", ondelete="SET NULL"), nullable=True
    )
    product_name: Mapped[str] = mapped_column(String(200), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("price >= 0", name="price_non_negative"),
        Index("ix_order_items_order_id", "order_id"),
        Index("ix_order_items_product_id", "product_id"),
    )


class OrderEvent(IdMixin, db.Model):
    """One change of an order: who moved it, when, from what, to what status, and its payment.

    A payment's own moves (asked for, failed, refunded) are events too, with the order's status
    unchanged (from_status == to_status): the id is the order stream's event id.
    """

    __tablename__ = "order_events"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    # None for the event that creates the order.
    from_status: Mapped[OrderStatus | None] = mapped_column(
        enum_column_type(OrderStatus, "order_event_from_status"), nullable=True
    )
    to_status: Mapped[OrderStatus] = mapped_column(
        enum_column_type(OrderStatus, "order_event_to_status"), nullable=False
    )
    # The status of the order's latest payment once this event happened (None: no payment yet):
    # with to_status, the order as a live stream shows it (core/events, GET .../events/).
    payment_status: Mapped[PaymentStatus | None] = mapped_column(
        enum_column_type(PaymentStatus, "order_event_payment_status"), nullable=True
    )
    # SET NULL: the history outlives the account that acted; None also means "the system".
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    note: Mapped[str] = mapped_column(String(255), nullable=False, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, server_default=func.now()
    )

    # an order's history, and a stream's replay after Last-Event-ID, in id order
    __table_args__ = (Index("ix_order_events_order_id_id", "order_id", "id"),)


class OrderEmailKind(StrEnum):
    CONFIRMATION = "order_confirmation"
    CANCELLATION = "order_cancelled"


class OrderEmailStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"


class OrderEmail(IdMixin, TimestampMixin, db.Model):
    """An email the shop owes a customer about an order: the outbox row of its sending job.

    Written in the same transaction as the change it reports (the order paid, cancelled), so a
    committed change never lacks its email and a rolled-back one never has one. One per order
    and kind: the same email is never owed twice.
    """

    __tablename__ = "order_emails"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[OrderEmailKind] = mapped_column(
        enum_column_type(OrderEmailKind, "order_email_kind"), nullable=False
    )
    status: Mapped[OrderEmailStatus] = mapped_column(
        enum_column_type(OrderEmailStatus, "order_email_status"),
        nullable=False,
        default=OrderEmailStatus.PENDING,
        server_default=OrderEmailStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (
        UniqueConstraint("order_id", "kind", name="uq_order_emails_order_id_kind"),
        # the sweeper's look-up of emails still owed
        Index("ix_order_emails_status_updated_at", "status", "updated_at"),
    )
