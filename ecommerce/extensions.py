"""Extensions, created unbound here and bound to an app by ``init_app`` in the factory."""

from __future__ import annotations

from flask import request
from flask_caching import Cache
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import MetaData

from ecommerce.config import METRICS_MULTIPROCESS
from ecommerce.core.db.session import RoutingSession
from ecommerce.core.metrics import MultiprocessMetrics, RequestMetrics
from ecommerce.core.ratelimit import without_route_limit
from ecommerce.errors import ProblemJsonPlugin, ProblemSchema

# Deterministic constraint names, so migrations can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def client_ip() -> str:
    """The client address; ProxyFix has already applied the trusted hop count."""
    return request.remote_addr or "unknown"


# expire_on_commit=False: sessions live for one request, and a service's last act is to commit and
# hand its objects to the schema. Expiring them would re-read every row to serialise it (an extra
# query each), and fail when a racing request has deleted the row in the meantime.
# RoutingSession sends the reads a service routes to the replica there (ecommerce/core/db/).
db = SQLAlchemy(
    metadata=MetaData(naming_convention=NAMING_CONVENTION),
    session_options={"expire_on_commit": False, "class_": RoutingSession},
)


migrate = Migrate()
api = Api(spec_kwargs={"extra_plugins": [ProblemJsonPlugin()]})
api.ERROR_SCHEMA = ProblemSchema  # document errors as the problem+json they are
jwt = JWTManager()
cache = Cache()
limiter = Limiter(key_func=client_ip)
# Probes and /metrics are never limited (a 429 would fail a health probe or leave a hole in the
# metrics), and a view without a limit of its own skips Flask-Limiter's look-up.
limiter.request_filter(without_route_limit)


# Under gunicorn with PROMETHEUS_MULTIPROC_DIR set, every worker writes its samples to that
# folder and /metrics sums them; otherwise the process's own registry is served.
_metrics_class = MultiprocessMetrics if METRICS_MULTIPROCESS else PrometheusMetrics
# The exporter serves /metrics; the per-request metrics under its default names are counted by
# RequestMetrics (ecommerce/core/metrics.py), at a fifth of the exporter's hooks' cost.
metrics = _metrics_class.for_app_factory(export_defaults=False)
request_metrics = RequestMetrics(prefix="ecommerce", excluded_paths=("/metrics", "/healthz"))
metrics.info(
    "ecommerce_exporter_info", "Information about the Prometheus Flask exporter", version=metrics.version
)
