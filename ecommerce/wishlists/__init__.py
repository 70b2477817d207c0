"""Wishlists: models only so far; the routes come with the shopping features."""

from ecommerce.wishlists import models  # noqa: F401
