"""Payment schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import Money, UTCDateTime
from ecommerce.payments.models import PaymentMethod, PaymentStatus


class PaymentSchema(Schema):
    id = fields.Integer(dump_only=True)
    order_id = fields.Integer(dump_only=True)
    payment_method = fields.Enum(PaymentMethod, by_value=True, dump_only=True)
    amount = Money(dump_only=True)
    status = fields.Enum(PaymentStatus, by_value=True, dump_only=True)
    failure_reason = fields.String(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class PaymentCreateSchema(Schema):
    payment_method = fields.Enum(PaymentMethod, by_value=True, required=True)
    token = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "the provider's payment token (sandbox: tok_decline..., tok_flaky...)"},
    )
