"""The product catalog."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.products import events, images, services
from ecommerce.products.schemas import (
    ProductImageUploadSchema,
    ProductQueryArgsSchema,
    ProductSchema,
    ProductUpdateSchema,
    UploadedImageSchema,
)
from ecommerce.users.models import Role

blp = Blueprint("products", __name__, url_prefix="/api/products", description="Product catalog")


@blp.route("/")
class ProductsView(MethodView):
    @blp.arguments(ProductQueryArgsSchema, location="query")
    @blp.paginate()
    @blp.cached_response(200, ProductSchema(many=True))
    def get(self, filters, pagination_parameters):
        """List products, filtered and sorted (cached)"""
        return services.product_list_page(
            filters, pagination_parameters.page, pagination_parameters.page_size
        )

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(ProductSchema)
    @blp.response(201, ProductSchema)
    def post(self, data):
        """Create a product (admin)"""
        return services.create_product(data)


@blp.route("/<int:product_id>/")
class ProductByIdView(MethodView):
    @blp.cached_response(200, ProductSchema)
    @blp.alt_response(304, description="Not modified (If-None-Match)")
    def get(self, product_id):
        """Read a product (cached, with ETag)"""
        return services.product_detail(product_id)

    @blp.auth(role=Role.ADMIN)
    @blp.arguments(ProductUpdateSchema)
    @blp.response(200, ProductSchema)
    def patch(self, changes, product_id):
        """Update a product (admin); visible on the next read everywhere"""
        return services.update_product(product_id, changes)

    @blp.auth(role=Role.ADMIN)
    @blp.response(204)
    def delete(self, product_id):
        """Delete a product (admin)"""
        services.delete_product(product_id)


@blp.route("/<int:product_id>/images/")
class ProductImagesView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.upload(ProductImageUploadSchema, max_bytes_setting="MEDIA_MAX_BYTES")
    @blp.response(201, UploadedImageSchema)
    @blp.alt_response(409, description="The product has its most pictures")
    @blp.alt_response(422, description="Not a whole picture, or more than MEDIA_MAX_PIXELS pixels")
    def post(self, files, product_id):
        """Add a picture to a product (admin): JPEG, PNG or WebP, re-encoded"""
        return images.add_product_image(product_id, files["file"].read())


@blp.route("/<int:product_id>/images/<int:image_id>/")
class ProductImageByIdView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.response(204)
    def delete(self, product_id, image_id):
        """Remove a picture of a product (admin)"""
        images.delete_product_image(product_id, image_id)


@blp.route("/<int:product_id>/events/")
class ProductEventsView(MethodView):
    @blp.response(200)
    @blp.doc(responses={"200": events.STREAM_RESPONSE})
    @blp.alt_response(404, description="No such product")
    @blp.alt_response(503, description="This server holds its most live streams; retry after Retry-After")
    def get(self, product_id):
        """Live stock of a product (Server-Sent Events)"""
        return events.product_stream(product_id)
