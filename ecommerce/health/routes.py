"""Liveness and readiness probes."""

from __future__ import annotations

from flask.views import MethodView

from ecommerce.core.blueprint import Blueprint
from ecommerce.errors import ServiceUnavailable
from ecommerce.health import services

blp = Blueprint("health", __name__, url_prefix="", description="Probes")


@blp.route("/healthz")
class LivenessView(MethodView):
    @blp.response(200)
    def get(self):
        """Liveness: 200 while the process runs"""
        return {"status": "ok"}


@blp.route("/readyz")
class ReadinessView(MethodView):
    @blp.response(200)
    @blp.alt_response(503, description="A dependency is down")
    def get(self):
        """Readiness: 200 only when the database and Redis answer"""
        checks = services.readiness()
        failed = [name for name, state in checks.items() if state == "down"]
        if failed:
            raise ServiceUnavailable(f"Unavailable: {', '.join(failed)}.", checks=checks)
        return {"status": "ok", "checks": checks}
