"""The background worker: ``huey_consumer ecommerce.worker.huey -k thread -w 4``.

Importing this module builds the app (configuration, database, queue, gateway, mail) once and
binds it to the tasks, so every task runs against it; with WORKER_METRICS_PORT set, the worker's
job metrics are served on http://<WORKER_METRICS_HOST>:<port>/metrics (127.0.0.1 unless
configured).
"""

from prometheus_client import start_http_server

from ecommerce import create_app
from ecommerce.tasks import bind_app, huey

app = create_app()
bind_app(app)

if app.config["WORKER_METRICS_PORT"]:
    start_http_server(app.config["WORKER_METRICS_PORT"], addr=app.config["WORKER_METRICS_HOST"])

__all__ = ["app", "huey"]
