"""The current user's profile, and the admin's list of users."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.auth.services import up_to_date
from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user, token_claims
from ecommerce.users import services
from ecommerce.users.models import Role
from ecommerce.users.schemas import UserQueryArgsSchema, UserSchema, UserUpdateSchema

blp = Blueprint("users", __name__, url_prefix="/api/users", description="User accounts")


@blp.route("/")
class UsersView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.arguments(UserQueryArgsSchema, location="query")
    @blp.response(200, UserSchema(many=True))
    @blp.paginate()
    def get(self, filters, pagination_parameters):
        """List users (admin)"""
        users, pagination_parameters.item_count = services.list_users(
            filters, pagination_parameters.page, pagination_parameters.page_size
        )
        return users


@blp.route("/me/")
class MeView(MethodView):
    @blp.auth()
    @blp.response(200, UserSchema)
    def get(self):
        """Read your own profile"""
        return up_to_date(current_user)

    @blp.auth()
    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(409, description="Email taken")
    def patch(self, changes):
        """Update your own profile"""
        return services.update_profile(current_user, changes, token_claims().get("fam"))


@blp.route("/<int:user_id>/")
class UserByIdView(MethodView):
    @blp.auth(role=Role.ADMIN)
    @blp.response(200, UserSchema)
    def get(self, user_id):
        """Read one user (admin)"""
        return services.get_user(user_id)
