"""Payments: models only so far; the routes come with the shopping features."""

from ecommerce.payments import models  # noqa: F401
