"""Cart schemas. Lines show the product's current price; the order keeps the price paid."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.carts.models import MAX_LINE_QUANTITY
from ecommerce.core.schemas import Money

QUANTITY = validate.Range(min=1, max=MAX_LINE_QUANTITY)
PRODUCT_ID = validate.Range(min=1, max=2**31 - 1)


class CartItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    product_id = fields.Integer(required=True, strict=True, validate=PRODUCT_ID)
    quantity = fields.Integer(required=True, strict=True, validate=QUANTITY)
    unit_price = Money(dump_only=True, attribute="product.price")
    line_total = Money(dump_only=True)


class CartItemUpdateSchema(Schema):
    quantity = fields.Integer(required=True, strict=True, validate=QUANTITY)


class CartSchema(Schema):
    id = fields.Integer(dump_only=True)
    items = fields.List(fields.Nested(CartItemSchema), dump_only=True)
    total_amount = Money(dump_only=True)
