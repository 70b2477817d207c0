"""One hub per app (per worker process): the live streams it holds, and the notices that wake them.

A notice names what changed ("order 12", "product 7"), never the new value. Two commits of one
row publish after their own commits and can reach the subscribers in either order, so a value
carried in the message could be overtaken by an older one; what a stream reads after the
notice is the committed state, never older than the notice.

- With Redis, a worker holds ONE subscription to ``EVENTS_CHANNEL`` (started with its first
  stream) and dispatches every notice to the streams it holds for that key; a notice for a key
  it holds no stream of costs a dict lookup. Every instance's workers (and the job worker)
  publish there, so a stream sees a change made anywhere.
- Without Redis (the embedded default), notices go straight to the hub of the process that
  committed; the job worker is another process, so order streams also look for new order
  events in the database every ``EVENTS_POLL_SECONDS`` while any is open.
- Stock notices are coalesced per product: the hub reads the stock once and hands it to every
  stream of that product, at most once per ``EVENTS_STOCK_INTERVAL_SECONDS``; a notice inside
  the interval schedules one delivery at its end, which reads the newest stock (the trailing
  edge: the last change is never held back).
- Order notices wake the order's streams, and each reads its own events after the last one it
  sent (a stream's ids are its own cursor).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask
from prometheus_client import Counter, Gauge
from redis.backoff import ExponentialBackoff

log = logging.getLogger(__name__)

STREAMS_OPEN = Gauge(
    "ecommerce_event_streams",
    "Live event streams held, summed over the live workers",
    ["kind"],
    multiprocess_mode="livesum",
)
NOTICES_RECEIVED = Counter("ecommerce_event_notices_total", "Change notices a worker received", ["kind"])
EVENTS_SENT = Counter("ecommerce_events_sent_total", "Events written to streams", ["kind"])

WAKE = object()  # put on an order stream's queue: read what is new
# How long a stream waits for its worker's first subscription to Redis to be confirmed before it
# reads the state to start from (a notice published before the confirmation would be missed).
SUBSCRIBE_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Topic:
    """What a kind of stream needs from its domain (registered by it, as jobs are)."""

    kind: str
    # shared topics (stock): one read per delivery for every stream of the key -> the event data
    load_shared: Callable[[int], dict[str, Any] | None] | None = None
    # without Redis: keys changed by other processes since a cursor -> (keys, new cursor)
    poll_changes: Callable[[int | None], tuple[set[int], int]] | None = None


_topics: dict[str, Topic] = {}


def register_topic(topic: Topic) -> None:
    _topics[topic.kind] = topic


@dataclass(eq=False)
class Subscription:
    kind: str
    key: int
    queue: queue.Queue = field(default_factory=queue.Queue)


class StreamsFull(Exception):
    """This worker holds EVENTS_MAX_STREAMS streams already."""


class Hub:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.max_streams = app.config["EVENTS_MAX_STREAMS"]
        self.interval = app.config["EVENTS_STOCK_INTERVAL_SECONDS"]
        self.poll_seconds = app.config["EVENTS_POLL_SECONDS"]
        self.channel = app.config["EVENTS_CHANNEL"]
        self.redis_url = app.config.get("REDIS_URL")
        self._lock = threading.Lock()
        self._subs: dict[tuple[str, int], set[Subscription]] = {}
        self._count = 0
        self._next_delivery: dict[tuple[str, int], float] = {}
        self._scheduled: set[tuple[str, int]] = set()
        self._started = False
        self._subscribed = threading.Event()  # the Redis subscription is confirmed
        self._stopped = threading.Event()

    # --- streams -------------------------------------------------------------------------
    def subscribe(self, kind: str, key: int) -> Subscription:
        sub = Subscription(kind, key)
        with self._lock:
            if self._count >= self.max_streams:
                raise StreamsFull()
            self._count += 1
            self._subs.setdefault((kind, key), set()).add(sub)
            start = not self._started
            self._started = True
        STREAMS_OPEN.labels(kind).inc()
        if start:
            self._start_listening()
        if self.redis_url and not self._subscribed.is_set():
            # Until Redis confirms the subscription, a notice published now would pass this
            # worker by; the caller reads its first state after this returns. A Redis that does
            # not answer in time: the stream starts anyway, and the resync after the
            # subscription catches it up.
            self._subscribed.wait(SUBSCRIBE_WAIT_SECONDS)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get((sub.kind, sub.key))
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            self._count -= 1
            if not subs:
                del self._subs[(sub.kind, sub.key)]
                self._next_delivery.pop((sub.kind, sub.key), None)
        STREAMS_OPEN.labels(sub.kind).dec()

    def open_streams(self) -> int:
        return self._count

    # --- notices -------------------------------------------------------------------------
    def dispatch(self, kind: str, key: int) -> None:
        """A committed change of ``kind`` ``key``: wake or feed the streams that watch it."""
        NOTICES_RECEIVED.labels(kind).inc()
        with self._lock:
            subs = list(self._subs.get((kind, key), ()))
        if not subs:
            return
        topic = _topics.get(kind)
        if topic is not None and topic.load_shared is not None:
            self._schedule_shared(kind, key)
        else:
            for sub in subs:
                sub.queue.put(WAKE)

    def refresh(self, kind: str, key: int, older_than: float) -> None:
        """Read a shared value again if no delivery has read it for ``older_than`` seconds.

        Called by idle streams on their heartbeat: a notice lost on its way (Redis down between
        the commit and the publish) leaves a stock stream behind by one heartbeat at most, and
        a crowd of streams on one product still costs one read per heartbeat."""
        with self._lock:
            # The last delivery was one interval before the next one may be.
            next_delivery = self._next_delivery.get((kind, key))
            if next_delivery is not None and time.monotonic() - (next_delivery - self.interval) < older_than:
                return
        self._schedule_shared(kind, key)  # many idle streams at once: one delivery is scheduled

    def _schedule_shared(self, kind: str, key: int) -> None:
        with self._lock:
            if (kind, key) in self._scheduled:
                return  # a delivery is due; it will read the newest value
            self._scheduled.add((kind, key))
            wait = self._next_delivery.get((kind, key), 0.0) - time.monotonic()
        timer = threading.Timer(max(wait, 0.0), self._deliver_shared, (kind, key))
        timer.daemon = True
        timer.start()

    def _deliver_shared(self, kind: str, key: int) -> None:
        with self._lock:
            self._scheduled.discard((kind, key))
            self._next_delivery[(kind, key)] = time.monotonic() + self.interval
            subs = list(self._subs.get((kind, key), ()))
        if not subs:
            return
        try:
            with self.app.app_context():
                data = _topics[kind].load_shared(key)
        except Exception:
            log.exception("could not read %s %s for its streams", kind, key)
            return
        if data is None:
            return
        for sub in subs:
            sub.queue.put(data)

    def resync(self) -> None:
        """After (re)subscribing: notices may have been missed; every stream reads afresh."""
        with self._lock:
            keys = list(self._subs)
        for kind, key in keys:
            self.dispatch(kind, key)

    # --- where notices come from ---------------------------------------------------------
    def _start_listening(self) -> None:
        if self.redis_url:
            target = self._listen_to_redis
        elif any(topic.poll_changes for topic in _topics.values()):
            target = self._poll_database
        else:
            return
        threading.Thread(target=target, name="event-hub", daemon=True).start()

    def _listen_to_redis(self) -> None:
        # One connection for the subscription, without the cache's 1 s socket timeout (a
        # subscriber waits for messages); health checks find a dead peer. redis-py has no
        # supervisor for a subscriber, so this loop re-subscribes with its backoff and then
        # resyncs the streams (notices published meanwhile are lost, their effects are not).
        client = redis.Redis.from_url(
            self.redis_url, socket_connect_timeout=1.0, socket_keepalive=True, health_check_interval=10
        )
        # At most 1 s between attempts: with a cap of 5 s, streams went on missing notices for
        # 1.2-4.2 s after a Redis killed for 8-20 s was back (measured); with 1 s, 0.4 s, for
        # one connection attempt a second per worker while Redis is down.
        backoff = ExponentialBackoff(cap=1.0, base=0.1)
        failures = 0
        while not self._stopped.is_set():
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._dispatch_message(message["data"])
                    elif message["type"] == "subscribe":
                        # Confirmed: from here on no notice passes this worker by.
                        if failures:
                            log.info("event hub subscribed again after %d failure(s)", failures)
                            self.resync()
                        failures = 0
                        self._subscribed.set()
            except redis.RedisError as error:
                failures += 1
                log.warning("event hub lost Redis (%s); retrying", error)
                self._stopped.wait(backoff.compute(failures))
            finally:
                pubsub.close()

    def _dispatch_message(self, data: bytes) -> None:
        try:
            kind, _, key = data.decode().partition(":")
            self.dispatch(kind, int(key))
        except (ValueError, UnicodeDecodeError):
            log.warning("event hub ignored a malformed notice %r", data[:100])

    def _poll_database(self) -> None:
        cursors: dict[str, int | None] = {kind: None for kind, t in _topics.items() if t.poll_changes}
        while not self._stopped.wait(self.poll_seconds):
            with self._lock:
                watched = {kind for kind, _ in self._subs}
            for kind in cursors:
                if kind not in watched and cursors[kind] is not None:
                    continue
                try:
                    with self.app.app_context():
                        keys, cursors[kind] = _topics[kind].poll_changes(cursors[kind])
                except Exception:
                    log.exception("could not poll %s changes", kind)
                    continue
                for key in keys:
                    self.dispatch(kind, key)

    def stop(self) -> None:
        self._stopped.set()
