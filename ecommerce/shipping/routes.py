"""Shipping zones, carrier legs and quotes."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.shipping import services
from ecommerce.shipping.schemas import (
    QuoteQueryArgsSchema,
    QuoteSchema,
    ShippingLegSchema,
    ShippingZoneSchema,
)
from ecommerce.users.models import Role

blp = Blueprint(
    "shipping", __name__, url_prefix="/api/shipping", description="Shipping zones, carrier legs and quotes"
)


@blp.route("/zones/")
class ZonesView(MethodView):
    @blp.response(200, ShippingZoneSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List shipping zones, by code"""
        zones, pagination_parameters.item_count = services.list_zones(
            pagination_parameters.page, pagination_parameters.page_size
        )
        return zones

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(ShippingZoneSchema)
    @blp.response(201, ShippingZoneSchema)
    @blp.alt_response(409, description="Code taken")
    def post(self, data):
        """Create a shipping zone (admin)"""
        return services.create_zone(data)


@blp.route("/zones/<code>/")
class ZoneByCodeView(MethodView):
    @blp.response(200, ShippingZoneSchema)
    def get(self, code):
        """Read a shipping zone"""
        return services.get_zone(code)

    @blp.auth(role=Role.ADMIN)
    @blp.response(204)
    @blp.alt_response(409, description="Still used by a leg")
    def delete(self, code):
        """Delete a shipping zone that no leg uses (admin)"""
        services.delete_zone(code)


@blp.route("/legs/")
class LegsView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.response(200, ShippingLegSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List carrier legs, by id (admin)"""
        legs, pagination_parameters.item_count = services.list_legs(
            pagination_parameters.page, pagination_parameters.page_size
        )
        return legs

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(ShippingLegSchema)
    @blp.response(201, ShippingLegSchema)
    @blp.alt_response(409, description="Would close a cycle of negative total cost")
    def post(self, data):
        """Add a carrier leg between two zones (admin)"""
        return services.create_leg(data)


@blp.route("/legs/<int:leg_id>/")
class LegByIdView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.response(204)
    def delete(self, leg_id):
        """Delete a carrier leg (admin)"""
        services.delete_leg(leg_id)


@blp.route("/quote/")
class QuoteView(MethodView):
    @blp.arguments(QuoteQueryArgsSchema, location="query")
    @blp.response(200, QuoteSchema)
    @blp.alt_response(404, description="No such zone")
    def get(self, args):
        """Quote shipping to a zone: the cheapest and the fastest route from any warehouse"""
        return services.quote(args["to"])
