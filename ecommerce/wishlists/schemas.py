"""Wishlist schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import UTCDateTime


class WishlistItemSchema(Schema):
    id = fields.Integer(dump_only=True)
    product_id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**31 - 1))
    created_at = UTCDateTime(dump_only=True)


class WishlistSchema(Schema):
    id = fields.Integer(dump_only=True)
    items = fields.List(fields.Nested(WishlistItemSchema), dump_only=True)
