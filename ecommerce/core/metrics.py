"""Prometheus plumbing shared by the web app and the worker: scrape-time collectors, the registry
``/metrics`` serves under gunicorn's multiprocess mode, and the database pool gauges.

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its Counters, Histograms and Gauges to
files in that folder and ``/metrics`` (answered by any one worker) sums them. Collectors that
compute their samples when scraped (the queue length) live in no file: they are listed here and
added to that registry as well, besides the default registry that a single process serves.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine

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


# -- database pool --------------------------------------------------------------------------
# Each gunicorn worker has a pool of its own. The gauges are written by the process that owns
# the pool; "livesum" adds the live workers' values up (a dead worker's files are removed by
# gunicorn.conf.py's child_exit), so /metrics on an instance reports the instance's total.

DB_POOL_CHECKED_OUT = Gauge(
    "ecommerce_db_pool_checked_out",
    "Database connections in use (checked out of the pool), summed over the live workers",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "ecommerce_db_pool_size",
    "Connections the pool keeps (DB_POOL_SIZE), summed over the live workers",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "ecommerce_db_pool_capacity",
    "Most connections the pool hands out (DB_POOL_SIZE + DB_MAX_OVERFLOW), summed over the live workers",
    multiprocess_mode="livesum",
)

_CHECKED_OUT_MARK = "ecommerce_metrics_checked_out"
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_engines_lock = threading.Lock()


def _on_checkout(_dbapi_connection, record, _proxy) -> None:
    # record_info survives a reconnect of the record, so every counted checkout is uncounted once.
    if not record.record_info.get(_CHECKED_OUT_MARK):
        record.record_info[_CHECKED_OUT_MARK] = True
        DB_POOL_CHECKED_OUT.inc()


def _on_checkin(_dbapi_connection, record) -> None:
    if record.record_info.pop(_CHECKED_OUT_MARK, False):
        DB_POOL_CHECKED_OUT.dec()


def _pool_limits(engine: Engine) -> tuple[int, int]:
    pool = engine.pool
    size = pool.size() if hasattr(pool, "size") else 1
    return size, size + max(getattr(pool, "_max_overflow", 0), 0)


def instrument_pool(engine: Engine) -> None:
    """Count ``engine``'s checked-out connections; its listeners survive ``dispose()``.

    Several apps (each with an engine) may live in one process, as in the tests: the size
    gauges add their pools up.
    """
    with _engines_lock:
        if engine in _engines:
            return
        _engines.add(engine)
        limits = [_pool_limits(each) for each in _engines]
    event.listen(engine, "checkout", _on_checkout)
    event.listen(engine, "checkin", _on_checkin)
    DB_POOL_SIZE.set(sum(size for size, _ in limits))
    DB_POOL_CAPACITY.set(sum(capacity for _, capacity in limits))
