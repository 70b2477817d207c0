"""User schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.core.schemas import UTCDateTime
from ecommerce.users.models import Role

USERNAME_VALIDATOR = validate.And(
    validate.Length(min=3, max=64),
    validate.Regexp(r"^[A-Za-z0-9_.-]+$", error="Use letters, digits, '.', '_' or '-' only."),
)
NAME_VALIDATOR = validate.Length(max=100)


def password_field(**kwargs) -> fields.String:
    return fields.String(
        load_only=True,
        validate=validate.Length(min=8, max=128, error="Must be between {min} and {max} characters."),
        **kwargs,
    )


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String(dump_only=True)
    email = fields.Email(dump_only=True)
    first_name = fields.String(dump_only=True)
    last_name = fields.String(dump_only=True)
    role = fields.Enum(Role, by_value=True, dump_only=True)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class UserUpdateSchema(Schema):
    email = fields.Email(validate=validate.Length(max=254))
    first_name = fields.String(validate=NAME_VALIDATOR)
    last_name = fields.String(validate=NAME_VALIDATOR)
    password = password_field()
    current_password = fields.String(load_only=True, validate=validate.Length(max=128))


class UserQueryArgsSchema(Schema):
    role = fields.Enum(Role, by_value=True)
    q = fields.String(validate=validate.Length(min=1, max=100))
