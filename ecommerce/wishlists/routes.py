"""The current user's wishlist."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user
from ecommerce.wishlists import services
from ecommerce.wishlists.schemas import WishlistItemSchema, WishlistSchema

blp = Blueprint("wishlists", __name__, url_prefix="/api/wishlist", description="Your wishlist")


@blp.route("/")
class WishlistView(MethodView):
    @blp.auth()
    @blp.response(200, WishlistSchema)
    def get(self):
        """Your wishlist (made on first use)"""
        return services.get_wishlist(current_user)


@blp.route("/items/")
class WishlistItemsView(MethodView):
    @blp.auth()
    @blp.arguments(WishlistItemSchema)
    @blp.response(201, WishlistItemSchema)
    @blp.alt_response(200, schema=WishlistItemSchema, description="Already in the wishlist")
    @blp.alt_response(404, description="No such product")
    def post(self, data):
        """Add a product (adding it again returns the existing line)"""
        item, created = services.add_item(current_user, data["product_id"])
        return item, 201 if created else 200


@blp.route("/items/<int:item_id>/")
class WishlistItemByIdView(MethodView):
    @blp.auth()
    @blp.response(204)
    def delete(self, item_id):
        """Remove a line"""
        services.remove_item(current_user, item_id)
