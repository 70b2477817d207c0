"""Shipping. `blp` is loaded on first use, so importing this package's models pulls in no routes."""


def __getattr__(name: str):
    if name == "blp":
        from ecommerce.shipping.routes import blp

        return blp
    raise AttributeError(name)
