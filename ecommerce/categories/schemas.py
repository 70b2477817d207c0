"""Category schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import UTCDateTime

NAME = validate.Length(min=1, max=120)
DESCRIPTION = validate.Length(max=5000)


class CategorySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=NAME)
    description = fields.String(load_default="", validate=DESCRIPTION)
    parent_id = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class CategoryDetailSchema(CategorySchema):
    children = fields.List(fields.Nested(CategorySchema), dump_only=True)


class CategoryUpdateSchema(Schema):
    name = fields.String(validate=NAME)
    description = fields.String(validate=DESCRIPTION)
    parent_id = fields.Integer(allow_none=True, validate=validate.Range(min=1))
