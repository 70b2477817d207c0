"""Orders: models only so far; the routes come with the shopping features."""

from ecommerce.orders import models  # noqa: F401
