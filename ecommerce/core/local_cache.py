"""A per-process copy of hot catalog cache entries, kept coherent by Redis itself.

A cached product read costs one Redis round trip; on a small endpoint that round trip is a large
share of the request. So each worker keeps the entries it has read from Redis in memory, and
Redis tells it when any of them changes: one connection per process runs
``CLIENT TRACKING ON BCAST PREFIX <cache prefix>product: ...`` (RESP3), and Redis pushes an
``invalidate`` message for every key under those prefixes that is written, deleted, expired or
evicted, and a flush message for FLUSHDB/FLUSHALL. No writer has to remember to publish.

Coherence ("a write is visible on the very next GET on every instance"):

* A write purges Redis after its commit, before its response is sent. Redis queues the
  invalidation to every tracking connection before it replies to the purge, and flushes both in
  the same pass of its event loop. So by the time the writer's client can send its next GET, the
  invalidation is already in this process's socket buffer.
* Before serving any local entry, the process drains that socket (a non-blocking ``recv``, no
  round trip) and drops what it names. A local hit is therefore never older than the last purge
  that reached Redis.
* A value read from Redis is kept only if no invalidation of its key arrived while the read was
  in flight (it may have been read just before a purge whose message came after it).
* If the tracking connection breaks, every local entry is dropped and the layer stands aside
  (reads go to Redis as before) until it has reconnected. Entries also expire after
  ``LOCAL_CACHE_SECONDS`` whatever happens, a bound on any failure this reasoning misses.

Only Redis on ``redis://`` or ``unix://`` is tracked; with TLS (``rediss://``) the layer is off.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client import Counter

log = logging.getLogger(__name__)

LOCAL_CACHE_REQUESTS = Counter(
    "ecommerce_local_cache_requests_total",
    "Look-ups in the per-process copy of the catalog cache",
    ["result"],  # hit, miss, bypass (tracking connection down)
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
HANDSHAKE_TIMEOUT = 0.5
_MISSING = object()


class _Incomplete(Exception):
    """The buffer ends inside a message: wait for more bytes."""


def _parse(buffer: bytes, position: int) -> tuple[Any, int]:
    """One RESP2/RESP3 value starting at ``position``: (value, position after it)."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[position : position + 1], buffer[position + 1 : end]
    after = end + 2
    if kind in (b"+", b":"):
        return line, after
    if kind == b"-":
        return RuntimeError(line.decode(errors="replace")), after
    if kind == b"_":
        return None, after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            raise _Incomplete
        return buffer[after : after + length], after + length + 2
    if kind in (b"*", b">", b"~"):
        count = int(line)
        items = []
        for _ in range(max(count, 0)):
            item, after = _parse(buffer, after)
            items.append(item)
        return (("push", items) if kind == b">" else items), after
    if kind == b"%":
        count = int(line)
        items = []
        for _ in range(2 * count):
            item, after = _parse(buffer, after)
            items.append(item)
        return items, after
    raise ValueError(f"unexpected RESP type {kind!r}")


def _command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)


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
        self._socket: socket.socket | None = None
        self._fd = -1
        self._buffer = b""
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
            self._drain()
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
            self._drain()
            reading = self._reading[key]
            invalidated = reading[0] != marker or self._socket is None
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
        if self._pid != os.getpid():  # a forked worker never shares its parent's socket
            self._pid = os.getpid()
            self._socket = None
            self._buffer = b""
            self._entries.clear()
            self._next_attempt = 0.0
        if self._socket is not None:
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        with self._lock:
            if self._socket is not None or time.monotonic() < self._next_attempt:
                return self._socket is not None  # another greenlet connected, or just failed
            self._next_attempt = now + RECONNECT_INTERVAL
            try:
                self._connect()
            except (OSError, ValueError, RuntimeError) as error:
                LOCAL_CACHE_RECONNECTS.labels("failed").inc()
                log.warning("local cache off: no Redis tracking connection (%s)", error)
                self._close()
                return False
        LOCAL_CACHE_RECONNECTS.labels("connected").inc()
        return True

    def _connect(self) -> None:
        url = urlsplit(self.redis_url)
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(HANDSHAKE_TIMEOUT)
            sock.connect(url.path)
        elif url.scheme == "redis":
            sock = socket.create_connection(
                (url.hostname or "127.0.0.1", url.port or 6379), HANDSHAKE_TIMEOUT
            )
        else:
            raise ValueError(f"{url.scheme}:// is not tracked")
        self._socket = sock
        hello = ["HELLO", "3"]
        if url.password is not None:
            hello += ["AUTH", unquote(url.username or "default"), unquote(url.password)]
        hello += ["SETNAME", CLIENT_NAME]  # how it shows in CLIENT LIST
        tracking = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix in self.prefixes:
            tracking += ["PREFIX", prefix]
        sock.sendall(_command(*hello) + _command(*tracking))
        replies: list[Any] = []
        buffer = b""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while len(replies) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer to HELLO / CLIENT TRACKING")
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the tracking connection")
            buffer += chunk
            position = 0
            while True:
                try:
                    value, position = _parse(buffer, position)
                except _Incomplete:
                    break
                replies.append(value)
            buffer = buffer[position:]
        for reply in replies:
            if isinstance(reply, RuntimeError):
                raise reply
        sock.setblocking(False)
        self._fd = sock.fileno()
        self._buffer = buffer
        self._forget_everything()  # anything cached before this connection may have missed one

    def _close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass
        self._socket = None
        self._buffer = b""
        self._forget_everything()

    def _forget_everything(self) -> None:
        """No local entry is trusted any more, nor any read now in flight."""
        self._entries.clear()
        for reading in self._reading.values():
            reading[0] += 1

    def _drain(self) -> None:
        """Apply every invalidation Redis has sent so far; never waits."""
        sock = self._socket
        if sock is None:
            return
        while True:
            try:
                # A plain read of the non-blocking descriptor: the cheapest "anything new?" there
                # is (gevent's socket.recv costs several times more per call).
                chunk = os.read(self._fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                log.warning("local cache off: the Redis tracking connection failed (%s)", error)
                self._close()
                return
            if not chunk:
                log.warning("local cache off: Redis closed the tracking connection")
                self._close()
                return
            self._buffer += chunk
            if len(chunk) < 65536:
                break
        position = 0
        buffer = self._buffer
        while position < len(buffer):
            try:
                message, position = _parse(buffer, position)
            except _Incomplete:
                break
            except ValueError as error:
                log.warning("local cache off: unreadable tracking message (%s)", error)
                self._close()
                return
            self._apply(message)
        self._buffer = buffer[position:]

    def _apply(self, message: Any) -> None:
        if not (isinstance(message, tuple) and message[0] == "push"):
            return
        items = message[1]
        if len(items) != 2 or items[0] != b"invalidate":
            return
        LOCAL_CACHE_INVALIDATIONS.inc()
        keys = items[1]
        if keys is None:  # FLUSHDB / FLUSHALL
            self._forget_everything()
            return
        for raw in keys:
            key = raw.decode(errors="replace")
            self._entries.pop(key, None)
            reading = self._reading.get(key)
            if reading is not None:
                reading[0] += 1
