"""The current user's shopping cart."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.carts import services
from ecommerce.carts.schemas import CartItemSchema, CartItemUpdateSchema, CartSchema
from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user

blp = Blueprint("carts", __name__, url_prefix="/api/cart", description="Your shopping cart")


@blp.route("/")
class CartView(MethodView):
    @blp.auth()
    @blp.response(200, CartSchema)
    def get(self):
        """Your cart, with current prices (made on first use)"""
        return services.get_cart(current_user)

    @blp.auth()
    @blp.response(204)
    def delete(self):
        """Empty your cart"""
        services.empty_cart(current_user)


@blp.route("/items/")
class CartItemsView(MethodView):
    @blp.auth()
    @blp.arguments(CartItemSchema)
    @blp.response(201, CartItemSchema)
    @blp.alt_response(200, schema=CartItemSchema, description="Added to an existing line")
    @blp.alt_response(404, description="No such product")
    def post(self, data):
        """Add a product; a product already in the cart gets the quantity added"""
        item, created = services.add_item(current_user, data["product_id"], data["quantity"])
        return item, 201 if created else 200


@blp.route("/items/<int:item_id>/")
class CartItemByIdView(MethodView):
    @blp.auth()
    @blp.arguments(CartItemUpdateSchema)
    @blp.response(200, CartItemSchema)
    def patch(self, data, item_id):
        """Set a line's quantity"""
        return services.set_quantity(current_user, item_id, data["quantity"])

    @blp.auth()
    @blp.response(204)
    def delete(self, item_id):
        """Remove a line"""
        services.remove_item(current_user, item_id)
