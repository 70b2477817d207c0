"""Registration, login and token schemas."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ecommerce.users.schemas import NAME_VALIDATOR, USERNAME_VALIDATOR, password_field


class RegisterSchema(Schema):
    username = fields.String(
        required=True,
        validate=USERNAME_VALIDATOR,
        # validate.And is opaque to the OpenAPI generator: the same rules, spelled out for it
        metadata={
            "description": "3-64 characters: letters, digits, '.', '_' or '-'",
            "minLength": 3,
            "maxLength": 64,
            "pattern": "^[A-Za-z0-9_.-]+$",
        },
    )
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = password_field(required=True)
    first_name = fields.String(load_default="", validate=NAME_VALIDATOR)
    last_name = fields.String(load_default="", validate=NAME_VALIDATOR)


class LoginSchema(Schema):
    username = fields.String(
        required=True, validate=validate.Length(min=1, max=254), metadata={"description": "username or email"}
    )
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True, metadata={"description": "access token lifetime, seconds"})
