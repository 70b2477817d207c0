"""The category tree."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.categories import services
from ecommerce.categories.schemas import CategoryDetailSchema, CategorySchema, CategoryUpdateSchema
from ecommerce.core.blueprint import Blueprint
from ecommerce.users.models import Role

blp = Blueprint("categories", __name__, url_prefix="/api/categories", description="Category tree")


@blp.route("/")
class CategoriesView(MethodView):
    @blp.cached_response(200, CategorySchema(many=True))
    def get(self):
        """List every category (the tree via parent_id; cached, with ETag)"""
        return services.category_list()

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(CategorySchema)
    @blp.response(201, CategoryDetailSchema)
    @blp.alt_response(409, description="Name taken under that parent")
    def post(self, data):
        """Create a category (admin)"""
        return services.create_category(data)


@blp.route("/<int:category_id>/")
class CategoryByIdView(MethodView):
    @blp.response(200, CategoryDetailSchema)
    def get(self, category_id):
        """Read a category with its children"""
        return services.get_category(category_id)

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(CategoryUpdateSchema)
    @blp.response(200, CategoryDetailSchema)
    @blp.alt_response(409, description="Parent loop or name taken")
    def patch(self, changes, category_id):
        """Rename or move a category (admin)"""
        return services.update_category(category_id, changes)

    @blp.auth(role=Role.ADMIN)
    @blp.response(204)
    @blp.alt_response(409, description="Has children or products")
    def delete(self, category_id):
        """Delete an empty category (admin)"""
        services.delete_category(category_id)
