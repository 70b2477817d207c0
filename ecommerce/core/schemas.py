"""Field types every resource's schemas share: money as a string, UTC timestamps with Z."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from marshmallow import fields

TWO_PLACES = Decimal("0.01")


class Money(fields.Decimal):
    """Money as a JSON string with two decimals ("19.99"), never a float."""

    def __init__(self, **kwargs):
        kwargs.setdefault("places", 2)
        kwargs.setdefault("rounding", ROUND_HALF_UP)
        kwargs.setdefault("as_string", True)
        kwargs.setdefault("allow_nan", False)
        # Documented as the string it is on the wire (the format is registered in create_app).
        kwargs["metadata"] = {
            "pattern": r"^\d{1,10}(\.\d{1,2})?$",
            "example": "19.99",
            **kwargs.get("metadata", {}),
        }
        super().__init__(**kwargs)

    default_error_messages = {"places": "Use at most two decimal places."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):  # "19.99", never a float (nor a bool, nor null)
            raise self.make_error("invalid")
        try:
            raw = Decimal(str(value))
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid") from None
        if not raw.is_finite():
            raise self.make_error("special")
        # Checked before the quantize in super(), which would silently round "1.999" to 2.00.
        if raw.as_tuple().exponent < -2:
            raise self.make_error("places")
        return super()._deserialize(value, attr, data, **kwargs)


class UTCDateTime(fields.DateTime):
    """ISO 8601 in UTC with a Z suffix: 2026-11-21T10:00:00Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Rating(fields.Float):
    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return float(Decimal(value).quantize(TWO_PLACES, rounding=ROUND_HALF_UP))


def utc_iso(value: datetime) -> str:
    return UTCDateTime().serialize("at", {"at": value})
