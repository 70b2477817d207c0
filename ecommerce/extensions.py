"""Extensions, created unbound here and bound to an app by ``init_app`` in the factory."""

from __future__ import annotations

from flask import request
from flask_caching import Cache
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics
from sqlalchemy import MetaData, event
from sqlalchemy.orm import Session

from ecommerce.config import METRICS_MULTIPROCESS
from ecommerce.core.metrics import OnlyNamed, multiprocess_registry
from ecommerce.core.replicas import RoutingSession
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
# RoutingSession sends the reads a service routes to the replica there (ecommerce/core/replicas.py).
db = SQLAlchemy(
    metadata=MetaData(naming_convention=NAMING_CONVENTION),
    session_options={"expire_on_commit": False, "class_": RoutingSession},
)


@event.listens_for(Session, "do_orm_execute")
def _locked_rows_are_read_fresh(state) -> None:
    """A row read ``FOR UPDATE`` is the row as it is now, never an older copy in the session.

    Objects outlive their transaction here (expire_on_commit=False), and the ORM would hand back
    the copy already in the identity map. A service that locks a row to check its state (is
    this payment still pending?) must see the committed truth, so every locking select
    overwrites what the session held.
    """
    if state.is_select and getattr(state.statement, "_for_update_arg", None) is not None:
        state.update_execution_options(populate_existing=True)


migrate = Migrate()
api = Api(spec_kwargs={"extra_plugins": [ProblemJsonPlugin()]})
api.ERROR_SCHEMA = ProblemSchema  # document errors as the problem+json they are
jwt = JWTManager()
cache = Cache()
limiter = Limiter(key_func=client_ip)


@limiter.request_filter
def _probes_and_metrics_are_never_limited() -> bool:
    # A 429 would fail a health probe or leave a hole in the metrics; nginx keeps /metrics private.
    return request.endpoint in {"health.LivenessView", "health.ReadinessView", "prometheus_metrics"}


class MultiprocessMetrics(GunicornInternalPrometheusMetrics):
    """/metrics under gunicorn: the exporter's own multiprocess registry sums the workers' files
    but would drop the collectors that compute at scrape time (the queue length); this one
    serves both (ecommerce.core.metrics.multiprocess_registry)."""

    def generate_metrics(self, accept_header=None, names=None):
        registry = multiprocess_registry()
        if names:
            registry = OnlyNamed(registry, names)
        encoder, content_type = choose_encoder(accept_header)
        return encoder(registry).decode("utf-8"), content_type


# Under gunicorn with PROMETHEUS_MULTIPROC_DIR set, every worker writes its samples to that
# folder and /metrics sums them; otherwise the process's own registry is served.
_metrics_class = MultiprocessMetrics if METRICS_MULTIPROCESS else PrometheusMetrics
metrics = _metrics_class.for_app_factory(
    group_by="endpoint", excluded_paths=["/metrics", "/healthz"], defaults_prefix="ecommerce"
)
