"""Product reviews."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user
from ecommerce.reviews import services
from ecommerce.reviews.schemas import ReviewSchema, ReviewUpdateSchema

blp = Blueprint("reviews", __name__, url_prefix="/api", description="Product reviews")


@blp.route("/products/<int:product_id>/reviews/")
class ReviewsView(MethodView):
    @blp.response(200, ReviewSchema(many=True))
    @blp.paginate()
    def get(self, product_id, pagination_parameters):
        """List a product's reviews, newest first"""
        reviews, pagination_parameters.item_count = services.list_reviews(
            product_id, pagination_parameters.page, pagination_parameters.page_size
        )
        return reviews

    @blp.auth()
    @blp.arguments(ReviewSchema)
    @blp.response(201, ReviewSchema)
    @blp.alt_response(409, description="Already reviewed")
    def post(self, data, product_id):
        """Review a product (one review per user and product)"""
        return services.create_review(current_user, product_id, data)


@blp.route("/reviews/<int:review_id>/")
class ReviewByIdView(MethodView):
    @blp.response(200, ReviewSchema)
    def get(self, review_id):
        """Read one review"""
        return services.get_review(review_id)

    @blp.auth()
    @blp.arguments(ReviewUpdateSchema)
    @blp.response(200, ReviewSchema)
    @blp.alt_response(403, description="Neither the author nor an admin")
    def patch(self, changes, review_id):
        """Edit a review (author or admin)"""
        return services.update_review(current_user, review_id, changes)

    @blp.auth()
    @blp.response(204)
    @blp.alt_response(403, description="Neither the author nor an admin")
    def delete(self, review_id):
        """Delete a review (author or admin)"""
        services.delete_review(current_user, review_id)
