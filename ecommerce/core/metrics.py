"""Prometheus plumbing shared by the web app and the worker: scrape-time collectors, and the
registry ``/metrics`` serves under gunicorn's multiprocess mode (the pool gauges are in
ecommerce/core/db/engine.py).

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its Counters, Histograms and Gauges to
files in that folder and ``/metrics`` (answered by any one worker) sums them. Collectors that
compute their samples when scraped (the queue length) live in no file: they are listed here and
added to that registry as well, besides the default registry that a single process serves.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

_scrape_time_collectors: list[Collector] = []


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
