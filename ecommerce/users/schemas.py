"""User schemas."""

from __future__ import annotations

from flask import current_app, has_app_context
from marshmallow import Schema, fields, validate

from ecommerce.config import Config
from ecommerce.core.schemas import UTCDateTime
from ecommerce.users.models import Role

USERNAME_VALIDATOR = validate.And(
    validate.Length(min=3, max=64),
    validate.Regexp(r"^[A-Za-z0-9_.-]+$", error="Use letters, digits, '.', '_' or '-' only."),
)
NAME_VALIDATOR = validate.Length(max=100)
PASSWORD_MAX_LENGTH = 128


class PasswordLength(validate.Length):
    """Length from PASSWORD_MIN_LENGTH to 128, the minimum read from the running app's config
    each time: schemas are built at import, before any app and its settings exist. Outside an
    app context (the OpenAPI document built while the app is set up) the environment's value
    applies. ``min`` reads like Length's own attribute, so OpenAPI still documents ``minLength``
    (the factory registers the blueprints inside the app's context, so with the app's value)."""

    def __init__(self) -> None:
        super().__init__(max=PASSWORD_MAX_LENGTH, error="Must be between {min} and {max} characters.")

    @property
    def min(self) -> int:
        if has_app_context():
            return current_app.config["PASSWORD_MIN_LENGTH"]
        return Config.PASSWORD_MIN_LENGTH

    @min.setter
    def min(self, value: int | None) -> None:
        # validate.Length.__init__ assigns min=None; the setting is the only source of the minimum.
        if value is not None:
            raise TypeError("the minimum password length is the PASSWORD_MIN_LENGTH setting")


def password_field(**kwargs) -> fields.String:
    return fields.String(load_only=True, validate=PasswordLength(), **kwargs)


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
