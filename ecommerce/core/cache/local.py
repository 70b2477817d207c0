"""A per-process copy of hot catalog cache entries, kept coherent by Redis itself.

A cached product read costs one Redis round trip; on a small endpoint that round trip is a large
share of the request. So each worker keeps the entries it has read from Redis in memory, and
Redis tells it when any of them changes: one redis-py connection per process runs
``CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <cache prefix>product: ...`` and then
subscribes to ``__redis__:invalidate``, where Redis publishes a message for every key under those
prefixes that is written, deleted, expired or evicted, and a flush message for FLUSHDB/FLUSHALL.
No writer has to remember to publish.

Coherence ("a write is visible on the very next GET on every instance"):

* A write purges Redis after its commit, before its response is sent. Redis queues the
  invalidation to every tracking connection before it replies to the purge, and flushes both in
  the same pass of its event loop. So by the time the writer's client can send its next GET, the
  invalidation is already in this process's socket buffer.
* Before serving any local entry, the process asks redis-py whether that connection holds
  anything (``can_read(timeout=0)``: no round trip); if it does, redis-py reads and parses every
  message there and the process drops what they name. A local hit is therefore never older than
  the last purge that reached Redis.
* A value read from Redis is kept only if no invalidation of its key arrived while the read was
  in flight (it may have been read just before a purge whose message came after it).
* While only part of a message is in, which keys it names is unknown: the layer stands aside
  until the rest has come. (Redis may not get a long message into the socket at once, so its end
  can arrive after the purge's reply has reached the writer.)
* If the tracking connection breaks, every local entry is dropped and the layer stands aside
  (reads go to Redis as before) until it has reconnected. Entries also expire after
  ``LOCAL_CACHE_SECONDS`` whatever happens, a bound on any failure this reasoning misses.

Redis on ``redis://``, ``rediss://`` (TLS) and ``unix://`` is tracked; the URL is read by
redis-py (credentials, database, TLS options). Everything here is redis-py's public connection
API (``send_command``, ``read_response``, ``can_read``) on RESP2's pub/sub form of tracking:
with RESP3 the invalidations would come as pushes, which redis-py hands only to a parser
callback it offers no public way to set on a plain connection.

redis-py's own client-side cache (``CacheConfig``) does not fit: it keeps the raw replies of an
allow-list of read commands (GET, HGET, ...), while the shop reads its keys through a Lua script
(EVALSHA), which is not on that list; every hit of it still goes through the client's command
path and a deep copy of the reply, which then has to be unpickled, where an entry here is the
loaded object itself; and it refuses servers older than Redis 7.4.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, ConnectionPool, parse_url
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger(__name__)

LOCAL_CACHE_REQUESTS = Counter(
    "ecommerce_local_cache_requests_total",
    "Look-ups in the per-process copy of the catalog cache",
    ["result"],  # hit, miss, bypass (tracking connection down, or a message half received)
)
LOCAL_CACHE_INVALIDATIONS = Counter(
    "ecommerce_local_cache_invalidations_total",
    "Invalidation messages from Redis applied to the per-process cache",
)
LOCAL_CACHE_RECONNECTS = Counter(
    "ecommerce_local_cache_tracking_connects_total",
    "Connections of the per-process cache's Redis tracking channel, by outcome",
    ["outcome"],
)

CLIENT_NAME = "ecommerce-local-cache"
# Bound once: a labelled child's lookup costs more than the increment itself.
_HIT, _MISS, _BYPASS = (LOCAL_CACHE_REQUESTS.labels(result) for result in ("hit", "miss", "bypass"))
RECONNECT_INTERVAL = 1.0
# The bound on the TCP connect and on each reply of the handshake (AUTH, CLIENT SETNAME,
# SELECT, CLIENT ID, CLIENT TRACKING, SUBSCRIBE).
HANDSHAKE_TIMEOUT = 0.5
CHANNEL = b"__redis__:invalidate"
_MISSING = object()


def _tracking_connection(redis_url: str) -> AbstractConnection:
    """A connection to the Redis of ``redis_url``, not connected yet.

    ``ConnectionPool.from_url`` lets the URL's query string override keyword arguments; these
    must win whatever the URL says, so the URL is read by redis-py's ``parse_url`` and they are
    laid over it."""
    options = parse_url(redis_url)
    options.update(
        protocol=2,  # invalidations as pub/sub messages (the module's docstring says why)
        client_name=CLIENT_NAME,  # how it shows in CLIENT LIST
        socket_connect_timeout=HANDSHAKE_TIMEOUT,
        socket_timeout=HANDSHAKE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # one attempt per RECONNECT_INTERVAL, never more
        health_check_interval=0,  # a PING would be answered among the messages
        decode_responses=False,
        driver_info=None,  # no CLIENT SETINFO: two round trips fewer on every reconnect
    )
    return ConnectionPool(**options).make_connection()


class LocalCache:
    """Entries of the shared cache, held in this process while Redis says they are unchanged."""

    def __init__(self, redis_url: str, prefixes: list[str], seconds: float, max_entries: int) -> None:
        self.redis_url = redis_url
        self.prefixes = prefixes
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._reading: dict[str, list[int]] = {}  # keys being read from Redis
        self._lock = threading.Lock()
        self._connection: AbstractConnection | None = None
        self._pid = 0
        self._next_attempt = 0.0

    # -- the public face ------------------------------------------------------------------

    def get_or_load(self, key: str, load: Callable[[], Any]) -> Any:
        """The local copy of ``key``; else ``load()`` (a read of the shared cache), kept locally
        when no invalidation of the key arrived meanwhile. None means a miss in both."""
        if not self._ready():
            _BYPASS.inc()
            return load()
        with self._lock:
            whole = self._drain()
            if whole:
                entry = self._entries.get(key)
                if entry is not None:
                    if entry[0] > time.monotonic():
                        self._entries.move_to_end(key)
                        _HIT.inc()
                        return entry[1]
                    del self._entries[key]
                # [invalidations of the key seen while reads of it are in flight, readers]
                reading = self._reading.setdefault(key, [0, 0])
                reading[1] += 1
                marker = reading[0]
        if not whole:
            _BYPASS.inc()
            return load()
        _MISS.inc()
        value = _MISSING
        try:
            value = load()
            return value
        finally:
            self._finish_read(key, marker, value)

    def close(self) -> None:
        """Drop the tracking connection and every entry (the next read connects again)."""
        with self._lock:
            self._close()

    def __len__(self) -> int:
        return len(self._entries)

    # -- reads in flight ------------------------------------------------------------------

    def _finish_read(self, key: str, marker: int, value: Any) -> None:
        with self._lock:
            whole = self._drain()
            reading = self._reading[key]
            invalidated = not whole or reading[0] != marker or self._connection is None
            reading[1] -= 1
            if reading[1] == 0:  # the last concurrent reader of this key
                del self._reading[key]
            if invalidated or value is _MISSING or value is None:
                return
            self._entries[key] = (time.monotonic() + self.seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    # -- the tracking connection ---------------------------------------------------------

    def _ready(self) -> bool:
        if self._pid != os.getpid():  # a forked worker never shares its parent's connection
            self._pid = os.getpid()
            connection, self._connection = self._connection, None
            if connection is not None:
                # Closes this process's copy of the descriptor only: redis-py does not shut a
                # socket down from a process other than the one that opened it, so the parent's
                # connection lives on.
                connection.disconnect()
            self._entries.clear()
            self._next_attempt = 0.0
        if self._connection is not None:
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        with self._lock:
            if self._connection is not None or time.monotonic() < self._next_attempt:
                return self._connection is not None  # another greenlet connected, or just failed
            self._next_attempt = now + RECONNECT_INTERVAL
            try:
                self._connect()
            except (RedisError, OSError, ValueError) as error:
                LOCAL_CACHE_RECONNECTS.labels("failed").inc()
                log.warning("local cache off: no Redis tracking connection (%s)", error)
                self._close()
                return False
        LOCAL_CACHE_RECONNECTS.labels("connected").inc()
        return True

    def _connect(self) -> None:
        connection = _tracking_connection(self.redis_url)
        try:
            connection.connect()  # AUTH, CLIENT SETNAME, SELECT
            connection.send_command("CLIENT", "ID")
            own_id = connection.read_response()
            # BCAST: every key under the prefixes, whoever reads it; REDIRECT to this very
            # connection, which then listens on the invalidation channel.
            tracking = ["CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST"]
            for prefix in self.prefixes:
                tracking += ["PREFIX", prefix]
            connection.send_command(*tracking)
            reply = connection.read_response()
            if reply != b"OK":
                raise RedisError(f"CLIENT TRACKING answered {reply!r}")
            connection.send_command("SUBSCRIBE", CHANNEL)
            reply = connection.read_response()
            if not (isinstance(reply, list) and reply[:2] == [b"subscribe", CHANNEL]):
                raise RedisError(f"SUBSCRIBE answered {reply!r}")
        except BaseException:
            connection.disconnect()
            raise
        self._connection = connection
        self._forget_everything()  # anything cached before this connection may have missed one

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
        self._forget_everything()

    def _forget_everything(self) -> None:
        """No local entry is trusted any more, nor any read now in flight."""
        self._entries.clear()
        for reading in self._reading.values():
            reading[0] += 1

    def _drain(self) -> bool:
        """Apply every invalidation Redis has sent so far; never waits. False while part of a
        message is in and the rest is still on its way (the look-up then stands aside)."""
        connection = self._connection
        if connection is None:
            return True
        try:
            # ``can_read`` counts the bytes redis-py has already taken off the socket as well
            # (several messages arrive in one read), so it is what ends the loop. Every error
            # closes the connection here, so redis-py never reconnects it behind this layer's
            # back (``can_read`` would, on a disconnected connection).
            while connection.can_read(timeout=0):
                try:
                    message = connection.read_response(timeout=0, disconnect_on_error=False)
                except RedisTimeoutError:
                    # Part of a message: redis-py keeps its bytes and parses it again from its
                    # first byte on the next call.
                    return False
                self._apply(message)
        except (RedisError, OSError, ValueError) as error:
            log.warning("local cache off: the Redis tracking connection failed (%s)", error)
            self._close()
        return True

    def _apply(self, message: Any) -> None:
        if not (isinstance(message, list) and len(message) == 3 and message[:2] == [b"message", CHANNEL]):
            return
        LOCAL_CACHE_INVALIDATIONS.inc()
        keys = message[2]
        if keys is None:  # FLUSHDB / FLUSHALL
            self._forget_everything()
            return
        for raw in keys:
            key = raw.decode(errors="replace")
            self._entries.pop(key, None)
            reading = self._reading.get(key)
            if reading is not None:
                reading[0] += 1
