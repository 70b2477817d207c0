"""Product schemas."""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ecommerce.core.schemas import Money, Rating, UTCDateTime

MAX_PRICE = Decimal("9999999999.99")
MAX_STOCK = 1_000_000_000
PRICE = validate.Range(min=Decimal("0"), max=MAX_PRICE)
STOCK = validate.Range(min=0, max=MAX_STOCK)
NAME = validate.Length(min=1, max=200)
DESCRIPTION = validate.Length(max=10000)
ID = validate.Range(min=1, max=2**31 - 1)

SORTS = ("price", "-price", "name", "-name", "created_at", "-created_at", "-rating")


def _media_url(name: str) -> str:
    from ecommerce.core.media import media_storage

    return media_storage().url(name)


class ProductImageSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.Function(lambda image: _media_url(image.file_name), metadata={"description": "the picture"})
    thumbnail_url = fields.Function(lambda image: _media_url(image.thumbnail_name))
    width = fields.Integer(dump_only=True)
    height = fields.Integer(dump_only=True)
    thumbnail_width = fields.Integer(dump_only=True)
    thumbnail_height = fields.Integer(dump_only=True)
    position = fields.Integer(dump_only=True, metadata={"description": "0 is the main picture"})


class UploadedImageSchema(ProductImageSchema):
    """A picture just uploaded, with the product it belongs to."""

    product_id = fields.Integer(dump_only=True)


class ProductImageUploadSchema(Schema):
    file = fields.Raw(
        required=True,
        metadata={"type": "string", "format": "binary", "description": "a JPEG, PNG or WebP picture"},
    )


class ProductSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=NAME)
    description = fields.String(load_default="", validate=DESCRIPTION)
    price = Money(required=True, validate=PRICE)
    stock_quantity = fields.Integer(load_default=0, validate=STOCK, strict=True)
    category_id = fields.Integer(required=True, validate=ID, strict=True)
    rating_avg = Rating(dump_only=True)
    rating_count = fields.Integer(dump_only=True)
    images = fields.List(
        fields.Nested(ProductImageSchema),
        dump_only=True,
        metadata={"description": "the pictures, main picture first"},
    )
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class ProductUpdateSchema(Schema):
    name = fields.String(validate=NAME)
    description = fields.String(validate=DESCRIPTION)
    price = Money(validate=PRICE)
    stock_quantity = fields.Integer(validate=STOCK, strict=True)
    category_id = fields.Integer(validate=ID, strict=True)


class ProductQueryArgsSchema(Schema):
    category = fields.Integer(validate=ID, metadata={"description": "includes sub-categories"})
    min_price = Money(validate=PRICE)
    max_price = Money(validate=PRICE)
    in_stock = fields.Boolean()
    q = fields.String(validate=validate.Length(min=1, max=200), metadata={"description": "text search"})
    sort = fields.String(validate=validate.OneOf(SORTS))

    @validates_schema
    def _price_range(self, data, **kwargs):
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            raise ValidationError("Must not exceed max_price.", "min_price")
