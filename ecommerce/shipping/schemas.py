"""Shipping schemas: zones and legs are written and read by zone code."""

from __future__ import annotations

import re
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ecommerce.core.schemas import Money
from ecommerce.shipping.models import ZONE_CODE_PATTERN

CODE = validate.Regexp(ZONE_CODE_PATTERN, error="Use 1 to 20 capital letters, digits and hyphens.")
NAME = validate.Length(min=1, max=200)
MAX_COST = Decimal("1000000.00")
COST = validate.Range(min=-MAX_COST, max=MAX_COST)
DAYS = validate.Range(min=1, max=365)


class LegCost(Money):
    """Money that may be negative (a carrier's rebate). The wire form is checked against the
    documented pattern before it is parsed: Python's Decimal would also take "+5", " 5" or
    "5e0", which the document refuses."""

    PATTERN = r"^-?\d{1,7}(\.\d{1,2})?$"
    _wire = re.compile(PATTERN)

    def __init__(self, **kwargs) -> None:
        kwargs["metadata"] = {"pattern": self.PATTERN, "example": "-2.50", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not self._wire.match(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON true or false, never 1, 0 or "yes"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class ShippingZoneSchema(Schema):
    code = fields.String(required=True, validate=CODE, metadata={"example": "WH-NORTH"})
    name = fields.String(required=True, validate=NAME)
    is_warehouse = StrictBoolean(load_default=False, metadata={"description": "goods ship from here"})


class ShippingLegSchema(Schema):
    id = fields.Integer(dump_only=True)
    from_zone = fields.String(required=True, validate=CODE, metadata={"description": "zone code"})
    to_zone = fields.String(required=True, validate=CODE, metadata={"description": "zone code"})
    cost = LegCost(required=True, validate=COST, metadata={"description": "negative: a rebate"})
    days = fields.Integer(required=True, strict=True, validate=DAYS)

    @validates_schema
    def _not_a_loop(self, data, **kwargs):
        if "from_zone" in data and data.get("to_zone") == data["from_zone"]:
            raise ValidationError("Must differ from from_zone.", "to_zone")


class QuoteQueryArgsSchema(Schema):
    to = fields.String(required=True, validate=CODE, metadata={"description": "destination zone code"})


class ShippingOptionSchema(Schema):
    method = fields.String(metadata={"enum": ["economy", "express"]})
    cost = Money(metadata={"description": "never below 0.00"})
    days = fields.Integer()
    route = fields.List(fields.String(), metadata={"description": "zone codes, warehouse first"})


class QuoteSchema(Schema):
    to = fields.String()
    options = fields.List(fields.Nested(ShippingOptionSchema))
