"""Paying for an order; payments are processed by a background job."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.core.tokens import current_user
from ecommerce.payments import services
from ecommerce.payments.schemas import PaymentCreateSchema, PaymentSchema

blp = Blueprint("payments", __name__, url_prefix="/api", description="Payments")


@blp.route("/orders/<int:order_id>/payments/")
class OrderPaymentsView(MethodView):
    @blp.auth()
    @blp.idempotent("payments:create")
    @blp.arguments(PaymentCreateSchema)
    @blp.response(202, PaymentSchema)
    def post(self, data, order_id):
        """Pay for your pending order: 202 with a pending payment, processed in the background"""
        return services.create_payment(current_user, order_id, data)


@blp.route("/payments/<int:payment_id>/")
class PaymentByIdView(MethodView):
    @blp.auth()
    @blp.response(200, PaymentSchema)
    def get(self, payment_id):
        """One payment: pending, succeeded, failed or refunded (owner or admin)"""
        return services.get_payment(current_user, payment_id)
