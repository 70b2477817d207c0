"""Prometheus plumbing shared by the web app and the worker: scrape-time collectors, and the
registry ``/metrics`` serves under gunicorn's multiprocess mode (the pool gauges are in
ecommerce/core/db/engine.py).

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its Counters, Histograms and Gauges to
files in that folder and ``/metrics`` (answered by any one worker) sums them. Collectors that
compute their samples when scraped (the queue length) live in no file: they are listed here and
added to that registry as well, besides the default registry that a single process serves.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

_scrape_time_collectors: list[Collector] = []
_MEMO_LIMIT = 1000  # label sets whose children are kept bound (methods are the client's to choose)


def register_scrape_time_collector(collector: Collector) -> Collector:
    """Serve ``collector`` in single-process mode (default registry) and in multiprocess mode."""
    REGISTRY.register(collector)
    _scrape_time_collectors.append(collector)
    return collector


def multiprocess_registry() -> CollectorRegistry:
    """A fresh registry: every live and dead worker's samples, summed, plus the scrape-time
    collectors. Built per scrape, as prometheus_client's multiprocess documentation does."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for collector in _scrape_time_collectors:
        registry.register(collector)
    return registry


class OnlyNamed:
    """``registry`` restricted to the metrics named (``/metrics?name[]=...``). prometheus_client's
    own restriction skips collectors that cannot describe themselves in advance, such as the
    multiprocess collector, so this one filters what is collected."""

    def __init__(self, registry: CollectorRegistry, names: list[str]) -> None:
        self.registry, self.names = registry, set(names)

    def collect(self):
        for metric in self.registry.collect():
            if metric.name in self.names or any(sample.name in self.names for sample in metric.samples):
                yield metric


class MultiprocessMetrics(GunicornInternalPrometheusMetrics):
    """/metrics under gunicorn: the exporter's own multiprocess registry sums the workers' files
    but would drop the collectors that compute at scrape time (the queue length); this one
    serves both."""

    def generate_metrics(self, accept_header=None, names=None):
        registry = multiprocess_registry()
        if names:
            registry = OnlyNamed(registry, names)
        encoder, content_type = choose_encoder(accept_header)
        return encoder(registry).decode("utf-8"), content_type


_COUNTED = "ecommerce.request_counted"  # in the WSGI environ of a request already counted


class RequestMetrics:
    """The per-request metrics: ``<prefix>_http_request_duration_seconds`` (histogram by method,
    endpoint and status), ``<prefix>_http_request_total`` (by method and status) and
    ``<prefix>_http_request_exceptions_total``: the names, labels, help texts and buckets of
    prometheus-flask-exporter's default metrics, which the dashboards and alerts read.

    The exporter still serves ``/metrics``; these are counted here instead of by its
    ``export_defaults`` hooks, which cost a cached product read about 30 us of Python per
    request (a dozen context-local look-ups, four failed ``hasattr`` on the request, a
    ``labels()`` call per metric) against about 8.5 us here, measured in process
    (docs/performance_tuning.md, "Reads at the floor"). Label children are bound once per label
    set, and the start time is the one the request-id hook takes first of all
    (``g.request_started``, ecommerce/middleware.py)."""

    def __init__(self, prefix: str, excluded_paths: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.excluded_paths = excluded_paths  # path prefixes, as the exporter's patterns matched
        self._metrics: tuple[Histogram, Counter, Counter] | None = None
        self._bound: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _create(self) -> tuple[Histogram, Counter, Counter]:
        # Once per process: every app of the process counts into the same metrics.
        if self._metrics is None:
            self._metrics = (
                Histogram(
                    f"{self.prefix}_http_request_duration_seconds",
                    "Flask HTTP request duration in seconds",
                    ("method", "endpoint", "status"),
                ),
                Counter(
                    f"{self.prefix}_http_request_total", "Total number of HTTP requests", ("method", "status")
                ),
                Counter(
                    f"{self.prefix}_http_request_exceptions_total",
                    "Total number of HTTP requests which resulted in an exception",
                    ("method", "status"),
                ),
            )
        return self._metrics

    def init_app(self, app: Flask) -> None:
        self._create()
        app.after_request(self._count)
        app.teardown_request(self._count_exception)

    def _children(self, method: str, endpoint: str, status: int) -> tuple[Any, Any]:
        key = (method, endpoint, status)
        bound = self._bound.get(key)
        if bound is None:
            duration, total, _ = self._create()
            bound = (duration.labels(method, endpoint, status), total.labels(method, status))
            if len(self._bound) < _MEMO_LIMIT:
                self._bound[key] = bound
        return bound

    def _count(self, response: Response) -> Response:
        current = request._get_current_object()  # type: ignore[attr-defined]
        if _COUNTED in current.environ:
            # An after-request hook that runs after this one failed, and Flask runs them all
            # again for the 500: the request was counted with its first answer.
            return response
        if current.path.startswith(self.excluded_paths):
            return response
        started = g.get("request_started")
        duration, total = self._children(current.method, str(current.endpoint), response.status_code)
        if started is not None:
            duration.observe(max(time.perf_counter() - started, 0.0))
        total.inc()
        current.environ[_COUNTED] = True  # the request's own, where ``g`` may outlive it (tests)
        return response

    def _count_exception(self, exception: BaseException | None) -> None:
        """A request that ended in an exception no handler answered: counted as a 500 (and in
        the duration and total, unless its response was counted already)."""
        if exception is None or request.path.startswith(self.excluded_paths):
            return
        _, _, exceptions = self._create()
        exceptions.labels(request.method, 500).inc()
        if _COUNTED not in request.environ:
            duration, total = self._children(request.method, str(request.endpoint), 500)
            started = g.get("request_started")
            if started is not None:
                duration.observe(max(time.perf_counter() - started, 0.0))
            total.inc()
