"""Checkout and orders."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user, token_claims
from ecommerce.orders import checkout, events, services
from ecommerce.orders.schemas import (
    OrderCreateSchema,
    OrderDetailSchema,
    OrderEventsHeadersSchema,
    OrderQueryArgsSchema,
    OrderSchema,
    OrderUpdateSchema,
)
from ecommerce.users.models import Role

blp = Blueprint("orders", __name__, url_prefix="/api/orders", description="Checkout and orders")


@blp.route("/")
class OrdersView(MethodView):
    @blp.auth()
    @blp.arguments(OrderQueryArgsSchema, location="query")
    @blp.response(200, OrderSchema(many=True))
    @blp.paginate()
    def get(self, filters, pagination_parameters):
        """Your orders, newest first (admin: all, filter by user_id and order_status)"""
        orders, pagination_parameters.item_count = services.list_orders(
            current_user, filters, pagination_parameters.page, pagination_parameters.page_size
        )
        return orders

    @blp.auth()
    @blp.idempotent("orders:create")
    @blp.arguments(OrderCreateSchema)
    @blp.response(201, OrderSchema)
    def post(self, data):
        """Check out the whole cart: stock for every line or for none"""
        return checkout.place_order(current_user, data)


@blp.route("/<int:order_id>/")
class OrderByIdView(MethodView):
    @blp.auth()
    @blp.response(200, OrderDetailSchema)
    def get(self, order_id):
        """One order with its lines, payments and status history"""
        return services.get_order(current_user, order_id)

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(OrderUpdateSchema)
    @blp.response(200, OrderDetailSchema)
    @blp.alt_response(409, description="Not an allowed transition")
    def patch(self, data, order_id):
        """Move an order to another status (admin)"""
        return services.change_status(current_user, order_id, data["order_status"])


@blp.route("/<int:order_id>/cancel/")
class OrderCancelView(MethodView):
    @blp.auth()
    @blp.response(200, OrderDetailSchema)
    @blp.alt_response(409, description="Only pending or paid orders can be cancelled")
    def post(self, order_id):
        """Cancel a pending or paid order; its stock is given back"""
        return services.cancel_order(current_user, order_id)


@blp.route("/<int:order_id>/events/")
class OrderEventsView(MethodView):
    @blp.auth()
    @blp.arguments(OrderEventsHeadersSchema, location="headers")
    @blp.response(200)
    @blp.doc(responses={"200": events.STREAM_RESPONSE})
    @blp.alt_response(503, description="This server holds its most live streams; retry after Retry-After")
    def get(self, headers, order_id):
        """Live events of an order (Server-Sent Events)"""
        return events.order_stream(
            current_user, order_id, headers.get("last_event_id"), until=token_claims().get("exp")
        )
