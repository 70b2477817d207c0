"""The product's live stock: the current stock first, then the stock after each change.

Every stream of a product in a worker shares one read of the stock per delivery, at most one
per ``EVENTS_STOCK_INTERVAL_SECONDS`` (the hub coalesces the notices; the last change is never
held back). The first event comes from the cached product, so a crowd opening streams on one
product costs the database nothing.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from sqlalchemy import select

from ecommerce.core.events import Event, Topic, event_stream, register_topic, stream_response
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.products.schemas import ProductSchema
from ecommerce.products.services import product_detail

KIND = "product"
STREAM_DESCRIPTION = (
    "`text/event-stream`: first the current stock, then `event: stock`, "
    '`data: {"product_id", "stock_quantity"}` after each change, at most one per second; '
    "`: keep-alive` comments while idle."
)
STREAM_RESPONSE = stream_response(STREAM_DESCRIPTION)
_detail_schema = ProductSchema()


def _stock_event(data: dict[str, Any]) -> Event:
    return Event("stock", {"product_id": data["product_id"], "stock_quantity": data["stock_quantity"]})


def product_stream(product_id: int) -> Response:
    """Open the product's stock stream: 404 for an unknown product (before it starts)."""

    def first() -> list[Event]:
        product = json.loads(product_detail(product_id).json(_detail_schema.dump).body)
        return [_stock_event({"product_id": product["id"], "stock_quantity": product["stock_quantity"]})]

    return event_stream(KIND, product_id, first, shared_event=_stock_event)


def _read_stock(product_id: int) -> dict[str, Any] | None:
    """The committed stock, from the primary (a replica may not have the change yet)."""
    stock = db.session.scalar(select(Product.stock_quantity).where(Product.id == product_id))
    return None if stock is None else {"product_id": product_id, "stock_quantity": stock}


register_topic(Topic(KIND, load_shared=_read_stock))
