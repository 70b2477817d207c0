"""Review schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import UTCDateTime

RATING = validate.Range(min=1, max=5)
COMMENT = validate.Length(max=5000)


class ReviewSchema(Schema):
    id = fields.Integer(dump_only=True)
    product_id = fields.Integer(dump_only=True)
    user_id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True, attribute="author.username")
    rating = fields.Integer(required=True, validate=RATING, strict=True)
    comment = fields.String(load_default="", validate=COMMENT)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class ReviewUpdateSchema(Schema):
    rating = fields.Integer(validate=RATING, strict=True)
    comment = fields.String(validate=COMMENT)
