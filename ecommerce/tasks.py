"""Background jobs: the Huey instance and the tasks (payments, refunds, order emails, sweeper).

The queue is Redis when REDIS_URL is set (RedisHuey's storage), otherwise a SQLite file in
instance/ (SqliteHuey's storage); the consumer is a process of its own either way:

    huey_consumer ecommerce.worker.huey -k thread -w 4

Tasks take ids, never ORM objects, run inside the worker's app context (ecommerce/worker.py
builds the app and binds it here), and are idempotent: the services they call check the state
in the database before acting. Each task adds itself to the job registry (ecommerce/core/jobs.py),
through which services enqueue it after their commit. Huey hands a job to one worker and
forgets it (no acknowledgement), so a worker killed mid-job loses that copy; what makes jobs
"never lost" is that their work is also recorded in the database (a pending payment, an owed
email) and ``sweep`` hands anything left undone to a worker again: every minute and whenever a
consumer starts (and everything, whatever its age, when a consumer's queue comes back after a
Redis outage: ``QueueStorage``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Flask
from huey import Huey, crontab, signals
from huey.storage import RedisStorage, SqliteStorage
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from redis import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ecommerce.config import config_from_env
from ecommerce.core.jobs import register_job
from ecommerce.core.mail import MailUnavailable
from ecommerce.core.metrics import register_scrape_time_collector
from ecommerce.orders import emails
from ecommerce.payments import services as payments
from ecommerce.payments.gateway import TransientGatewayError

log = logging.getLogger(__name__)


class QueueStorage(RedisStorage):
    """Huey's Redis storage, made to ride out a Redis that dies (docs/fault_tolerance.md).

    - Timeouts. Huey's pool had redis-py's defaults, 5 s each: an enqueue to a Redis that stops
      answering (frozen, or its host gone) held the request 5 s (measured, SIGSTOPped Redis). A
      connect now gives up after 0.5 s, as the cache's do, and a reply after 2 s (measured: 2.0
      s), since the consumer's BRPOP waits ``read_timeout`` (1 s) for a job before it replies.
    - In the consumer, a queue that cannot be read is read as an empty one: ``dequeue`` waits
      ``read_timeout``, as a BRPOP on an empty queue does, and returns nothing. Raised into
      Huey's loop instead, each failure was a logged traceback (80 in a 10 s outage) and a
      sleep growing by 1.15x up to 10 s, the consumer's ``max_delay``: after a long outage the
      queue was read again only that long after Redis came back.
    - The first read that succeeds after a failed one enqueues ``sweep_after_outage``. Redis
      may have come back empty (it keeps nothing on disk unless told to), losing the jobs that
      were waiting; and the jobs the web side could not enqueue meanwhile never reached it. The
      work of both is recorded in the database, and the periodic ``sweep`` would find it, but
      only JOB_SWEEP_AFTER_SECONDS (180 s) later; this sweep takes everything left undone at once.
    """

    def __init__(self, name: str, url: str, **options: Any) -> None:
        pool = ConnectionPool.from_url(url, socket_connect_timeout=0.5, socket_timeout=2.0)
        super().__init__(name, connection_pool=pool, **options)
        self._unreachable = False
        self._unreachable_lock = threading.Lock()

    def dequeue(self) -> bytes | None:
        try:
            data = super().dequeue()
        except (RedisConnectionError, RedisTimeoutError) as error:
            with self._unreachable_lock:
                first, self._unreachable = not self._unreachable, True
            if first:
                log.warning("job queue unreachable, reading it again every %ss: %s", self.read_timeout, error)
            time.sleep(self.read_timeout)
            return None
        if self._unreachable:
            with self._unreachable_lock:
                back, self._unreachable = self._unreachable, False
            if back:
                self._sweep_after_outage()
        return data

    def read_schedule(self, ts: Any) -> list:
        try:
            return super().read_schedule(ts)
        except (RedisConnectionError, RedisTimeoutError):
            return []  # the scheduler's next turn reads it; dequeue reports the outage

    def _sweep_after_outage(self) -> None:
        try:
            sweep_after_outage()
        except Exception as error:  # noqa: BLE001 - down again: the next successful read retries
            self._unreachable = True
            log.warning("job queue back but the sweep could not be queued: %s", error)
            return
        log.warning("job queue reachable again: sweeping what the outage may have lost")


def _storage_for(redis_url: str | None, sqlite_path: str) -> tuple[type, dict[str, Any]]:
    if redis_url:
        return QueueStorage, {"url": redis_url}
    Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    return SqliteStorage, {"filename": sqlite_path}


_env_config = config_from_env()
_storage_class, _storage_kwargs = _storage_for(_env_config.REDIS_URL, _env_config.HUEY_SQLITE_PATH)
huey = Huey(_env_config.HUEY_NAME, results=False, utc=True, storage_class=_storage_class, **_storage_kwargs)
_storage_key = (_storage_class, tuple(sorted(_storage_kwargs.items())))


def configure_queue(app: Flask) -> None:
    """Point the queue at the app's Redis (or SQLite file), as the app's config says."""
    global _storage_key
    storage_class, kwargs = _storage_for(app.config.get("REDIS_URL"), app.config["HUEY_SQLITE_PATH"])
    key = (storage_class, tuple(sorted(kwargs.items())))
    if key != _storage_key:
        huey.storage = storage_class(app.config["HUEY_NAME"], **kwargs)
        _storage_key = key


# -- the app the tasks run in -------------------------------------------------------------

_app: Flask | None = None


def bind_app(app: Flask) -> None:
    """The app this worker process runs its tasks in (ecommerce/worker.py)."""
    global _app
    _app = app


def flask_app() -> Flask:
    if _app is None:
        raise RuntimeError("no app bound: tasks run in the worker (huey_consumer ecommerce.worker.huey)")
    return _app


def app_task(**options: Any) -> Callable:
    """A Huey task that runs inside an app context (its own database session), and is in the
    job registry under its name."""

    def decorator(func: Callable) -> Callable:
        @wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with flask_app().app_context():
                return func(*args, **kwargs)

        task = huey.task(name=func.__name__, **options)(run)
        register_job(func.__name__, task)
        return task

    return decorator


# -- the tasks ------------------------------------------------------------------------------


@app_task(retries=8, retry_delay=1, retry_backoff=2)
def process_payment(payment_id: int) -> None:
    """Charge a pending payment and record the result (TransientGatewayError: retried)."""
    payments.process_payment(payment_id)


@app_task(retries=8, retry_delay=1, retry_backoff=2)
def refund_payment(payment_id: int) -> None:
    """Refund a succeeded payment of a cancelled order."""
    payments.refund_payment(payment_id)


@app_task(retries=10, retry_delay=2, retry_backoff=2)
def send_order_email(email_id: int) -> None:
    """Send an owed order email (MailUnavailable: retried while the mail server is down)."""
    emails.send_order_email(email_id)


def sweep_now(everything: bool = False) -> dict[str, int]:
    """Hand every payment, refund and email left undone too long (``everything``: left undone
    at all) to a worker again. A job handed over twice does its work once (the services check
    the rows under their locks)."""
    older_than = 0 if everything else None
    with flask_app().app_context():
        pending, refunds = payments.payments_to_retry(older_than)
        owed = emails.emails_to_retry(older_than)
    for payment_id in pending:
        process_payment(payment_id)
    for payment_id in refunds:
        refund_payment(payment_id)
    for email_id in owed:
        send_order_email(email_id)
    found = {"payments": len(pending), "refunds": len(refunds), "emails": len(owed)}
    if any(found.values()):
        log.warning("sweep re-enqueued %s", found)
    return found


@huey.periodic_task(crontab(minute="*"), name="sweep")
def sweep() -> None:
    sweep_now()


@huey.task(name="sweep_after_outage")
def sweep_after_outage() -> None:
    """Queued by QueueStorage when the queue is readable again after an outage."""
    sweep_now(everything=True)


_startup_lock = threading.Lock()
_startup_done = False


@huey.on_startup()
def _sweep_on_startup() -> None:
    # Every worker thread runs startup hooks; once per consumer process is enough.
    global _startup_done
    with _startup_lock:
        if _startup_done:
            return
        _startup_done = True
    # huey_consumer gives the "huey" logger a handler of its own after importing this module;
    # its records then came out twice (plain and JSON) and ignored LOG_LEVEL. The app's JSON
    # logging on the root logger is the one to keep.
    huey_logger = logging.getLogger("huey")
    huey_logger.handlers.clear()
    huey_logger.setLevel(logging.NOTSET)
    try:
        sweep_now()
    except Exception:
        log.exception("startup sweep failed; the periodic sweep will retry")


class _ExpectedFailureFilter(logging.Filter):
    """A gateway hiccup or a mail server down is expected and retried: one warning line, not
    an ERROR with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (TransientGatewayError, MailUnavailable)):
            record.msg, record.args = f"{record.getMessage()} Retrying: {error!r}", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("huey").addFilter(_ExpectedFailureFilter())


# -- metrics --------------------------------------------------------------------------------

JOBS = Counter("ecommerce_jobs_total", "Background jobs by task and event", ["task", "event"])
JOB_DURATION = Histogram(
    "ecommerce_job_duration_seconds",
    "Time a background job ran, by task and outcome",
    ["task", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_started: dict[str, float] = {}
_EVENTS = {
    signals.SIGNAL_ENQUEUED: "enqueued",
    signals.SIGNAL_EXECUTING: "started",
    signals.SIGNAL_COMPLETE: "succeeded",
    signals.SIGNAL_ERROR: "failed",
    signals.SIGNAL_RETRYING: "retried",
    signals.SIGNAL_EXPIRED: "expired",
}


@huey.signal()
def _count(signal: str, task, exc: Exception | None = None) -> None:
    event = _EVENTS.get(signal)
    if event is None:
        return
    JOBS.labels(task.name, event).inc()
    if signal == signals.SIGNAL_EXECUTING:
        _started[task.id] = time.perf_counter()
    elif signal in (signals.SIGNAL_COMPLETE, signals.SIGNAL_ERROR):
        started = _started.pop(task.id, None)
        if started is not None:
            outcome = "succeeded" if signal == signals.SIGNAL_COMPLETE else "failed"
            JOB_DURATION.labels(task.name, outcome).observe(time.perf_counter() - started)
        if exc is not None and not isinstance(exc, (TransientGatewayError, MailUnavailable)):
            log.error("job %s %s failed: %r", task.name, task.id, exc)


class QueueCollector:
    """Queue length and scheduled (delayed: retries waiting) jobs, read at scrape time.

    The queue is shared, so every process reports the same numbers: aggregate with max(), not sum().
    """

    def describe(self):
        # The names alone, so that registering does not read the queue.
        yield GaugeMetricFamily("ecommerce_queue_length", "Jobs waiting in the queue")
        yield GaugeMetricFamily("ecommerce_queue_scheduled", "Jobs scheduled for later (retries)")

    def collect(self):
        try:
            pending, scheduled = huey.pending_count(), huey.scheduled_count()
        except Exception:  # the queue is down: report nothing rather than fail the scrape
            return
        yield GaugeMetricFamily("ecommerce_queue_length", "Jobs waiting in the queue", value=pending)
        yield GaugeMetricFamily(
            "ecommerce_queue_scheduled", "Jobs scheduled for later (retries)", value=scheduled
        )


# Served by the default registry (one process, the worker) and by the multiprocess /metrics.
register_scrape_time_collector(QueueCollector())
