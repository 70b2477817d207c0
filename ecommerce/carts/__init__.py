"""Carts: models only so far; the routes come with the shopping features."""

from ecommerce.carts import models  # noqa: F401
