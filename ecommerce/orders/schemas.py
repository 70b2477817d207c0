"""Order schemas. Lines carry the unit price paid, not the product's current price."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import Money, UTCDateTime
from ecommerce.orders.models import OrderStatus
from ecommerce.payments.models import PaymentStatus
from ecommerce.payments.schemas import PaymentSchema


class OrderItemSchema(Schema):
    product_id = fields.Integer(dump_only=True, allow_none=True)
    product_name = fields.String(dump_only=True)
    quantity = fields.Integer(dump_only=True)
    price = Money(dump_only=True, metadata={"description": "unit price paid"})
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class OrderEventSchema(Schema):
    from_status = fields.Enum(OrderStatus, by_value=True, dump_only=True, allow_none=True)
    to_status = fields.Enum(OrderStatus, by_value=True, dump_only=True)
    payment_status = fields.Enum(
        PaymentStatus,
        by_value=True,
        dump_only=True,
        allow_none=True,
        metadata={"description": "the latest payment's status after this event (null: no payment yet)"},
    )
    actor_id = fields.Integer(dump_only=True, allow_none=True)
    note = fields.String(dump_only=True)
    created_at = UTCDateTime(dump_only=True)


class OrderSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.Integer(dump_only=True)
    order_status = fields.Enum(OrderStatus, by_value=True, dump_only=True)
    total_amount = Money(dump_only=True, metadata={"description": "the lines plus shipping_cost"})
    shipping_address = fields.String(dump_only=True)
    shipping_method = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "economy or express; null: no shipping chosen"},
    )
    shipping_cost = Money(dump_only=True)
    shipping_route = fields.List(
        fields.String(),
        dump_only=True,
        allow_none=True,
        metadata={"description": "zone codes from the warehouse to the destination"},
    )
    items = fields.List(fields.Nested(OrderItemSchema), dump_only=True)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class OrderDetailSchema(OrderSchema):
    payments = fields.List(fields.Nested(PaymentSchema), dump_only=True)
    events = fields.List(fields.Nested(OrderEventSchema), dump_only=True)


SHIPPING_METHODS = ("economy", "express")


class ShippingChoiceSchema(Schema):
    to = fields.String(
        required=True, validate=validate.Length(min=1, max=20), metadata={"description": "a zone code"}
    )
    method = fields.String(required=True, validate=validate.OneOf(SHIPPING_METHODS))


class OrderCreateSchema(Schema):
    shipping_address = fields.String(load_default="", validate=validate.Length(max=1000))
    shipping = fields.Nested(
        ShippingChoiceSchema,
        metadata={
            "description": "ship to a zone by a method (GET /api/shipping/quote/); left out: no shipping"
        },
    )


class OrderUpdateSchema(Schema):
    order_status = fields.Enum(OrderStatus, by_value=True, required=True)


class OrderQueryArgsSchema(Schema):
    user_id = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1), metadata={"description": "admin only"}
    )
    order_status = fields.Enum(OrderStatus, by_value=True)


class OrderEventsHeadersSchema(Schema):
    last_event_id = fields.Integer(
        data_key="Last-Event-ID",
        validate=validate.Range(min=0, max=2**63 - 1),
        metadata={"description": "the id of the last event received: the stream replays what came after it"},
    )
