"""Response caching for the catalog: cached JSON bytes, stampede control, purge after commit.

What is cached is the finished JSON body (and its ETag), so a hit costs one cache round trip
and no serialisation. Reads survive a dead cache: any cache error opens a short circuit
breaker and the read is answered from the database.

Writes never purge before their transaction commits: services call ``invalidate_product`` /
``invalidate_product_lists``, which queue the purge on the SQLAlchemy session; it runs in the
session's ``after_commit`` event and is dropped on rollback.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from prometheus_client import Counter
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.orm import Session

from ecommerce.core.local_cache import LocalCache
from ecommerce.extensions import cache

log = logging.getLogger(__name__)

CACHE_REQUESTS = Counter("ecommerce_cache_requests_total", "Catalog cache look-ups", ["entity", "result"])

LOCK_TTL_SECONDS = 10
LOCK_WAIT_SECONDS = 3.0
LOCK_POLL_SECONDS = 0.02
BREAKER_OPEN_SECONDS = 2.0
PRODUCT_LISTS_PREFIX = "products:list:"
PRODUCT_LIST_VERSION_KEY = PRODUCT_LISTS_PREFIX + "version"

_CACHE_ERRORS = (RedisError, OSError)
T = TypeVar("T")
_breaker_open_until = 0.0


@dataclass(frozen=True)
class CachedJSON:
    """A finished JSON body with its ETag, and the total row count for list pages."""

    body: bytes
    etag: str
    total: int | None = None

    def to_response(self) -> Response:
        """The body as a JSON response with its ETag; 304 when the client's copy is current.

        The hot path of every cached read: the stored bytes go out as they are, and
        If-None-Match is only parsed when the client sent one (weak comparison, RFC 9110 13.1.2).
        """
        headers = [("ETag", self.etag), ("Cache-Control", "no-cache")]
        if "If-None-Match" in request.headers and request.if_none_match.contains_weak(self.etag[1:-1]):
            return Response(status=304, headers=headers, content_type="application/json")
        return Response(self.body, headers=headers, content_type="application/json")

    @classmethod
    def from_data(cls, data: Any, total: int | None = None) -> CachedJSON:
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(body=body, etag='"' + hashlib.sha1(body).hexdigest() + '"', total=total)


def _cache_call(operation: Callable[[], Any], default: Any = None, *, always: bool = False) -> Any:
    """Run one cache operation; on a cache failure open the breaker and return ``default``.

    Reads skip the cache while the breaker is open; purges (``always``) are tried anyway, so a
    write is never left unpurged merely because an earlier read failed.
    """
    global _breaker_open_until
    if not always and time.monotonic() < _breaker_open_until:
        return default
    try:
        return operation()
    except _CACHE_ERRORS as exc:
        _breaker_open_until = time.monotonic() + BREAKER_OPEN_SECONDS
        log.warning("cache unavailable, serving from the database: %s", exc)
        return default


@functools.cache
def _counter(entity: str, result: str):
    return CACHE_REQUESTS.labels(entity, result)


def cached(key: str) -> Any:
    """The shared cache's value of ``key`` (None on a miss), through this process's copy of it
    when there is one (ecommerce/core/local_cache.py)."""
    local: LocalCache | None = current_app.extensions.get("local_cache")
    if local is None:
        return _cache_call(lambda: cache.get(key))
    return local.get_or_load(cache.cache._get_prefix() + key, lambda: _cache_call(lambda: cache.get(key)))


def init_local_cache(app: Flask) -> None:
    """After cache.init_app: a per-process layer over a Redis cache, unless turned off."""
    seconds = app.config["LOCAL_CACHE_SECONDS"]
    backend = app.extensions["cache"][cache]
    if seconds <= 0 or _redis_client(backend) is None or not app.config.get("CACHE_REDIS_URL"):
        return
    prefix = backend._get_prefix()
    app.extensions["local_cache"] = LocalCache(
        app.config["CACHE_REDIS_URL"],
        [prefix + "product:", prefix + PRODUCT_LISTS_PREFIX],
        seconds,
        app.config["LOCAL_CACHE_MAX_ENTRIES"],
    )


def _redis_client(backend: Any) -> Any | None:
    """The Redis client of a Redis cache backend; None for the in-process caches."""
    return getattr(backend, "_write_client", None)


def _acquire_lock(key: str) -> bool:
    """The fill lock on an in-process cache (Redis takes it in ``_compute_on_redis``)."""
    return bool(cache.cache.add(key, 1, timeout=LOCK_TTL_SECONDS))


# Store a freshly computed value only if no write has purged the key since the reader began:
# the generation the reader saw must still be the current one. One script, so no write can
# slip in between the check and the SET.
_STORE_IF_GENERATION = """
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[3] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


def lock_key_of(key: str) -> str:
    """The key of the lock one filler of ``key`` holds. Outside the tracked prefixes (``product:``,
    ``products:list:``): taking and releasing it is no news to the per-process caches."""
    return "lock:" + key


def generation_key(key: str) -> str:
    return key + ":gen"


def _generation(key: str) -> str:
    value = cache.get(generation_key(key))
    return "" if value is None else str(value)


def _store_if_unpurged(key: str, value: Any, timeout: int, generation: str) -> None:
    """On an in-process cache: no greenlet switch between this check and the set (on Redis, the
    ``_STORE_IF_GENERATION`` script does both in ``_compute_on_redis``)."""
    if _generation(key) == generation:
        cache.set(key, value, timeout=timeout)


def get_or_compute(
    key: str, compute: Callable[[], T], timeout: int, entity: str, *, guard_writes: bool = False
) -> T:
    """The cached value of ``key``; on a miss, computed by one caller at a time.

    ``guard_writes``: the key is purged by writes (``invalidate_product``). A value computed
    from a read that began before such a write committed is then never stored, so the cache
    cannot keep a stale copy past the purge.
    """
    hit = cached(key)
    if hit is not None:
        _counter(entity, "hit").inc()
        return hit
    _counter(entity, "miss").inc()
    if _redis_client(cache.cache) is not None:
        return _compute_on_redis(cache.cache, key, compute, timeout, guard_writes)

    # In-process caches (SimpleCache): the same steps, one call each.
    lock_key = lock_key_of(key)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not _cache_call(lambda: _acquire_lock(lock_key), default=True):
        # Another request is computing this key: wait for its result rather than pile on the
        # database, and take the lock over if the holder finishes without storing a value.
        if time.monotonic() >= deadline:
            return compute()
        time.sleep(LOCK_POLL_SECONDS)
        hit = _cache_call(lambda: cache.get(key))
        if hit is not None:
            return hit
    try:
        # Look again under the lock: a caller that missed just before the previous holder
        # stored the value and released the lock would otherwise compute it a second time.
        hit = _cache_call(lambda: cache.get(key))
        if hit is not None:
            return hit
        if not guard_writes:
            value = compute()
            _cache_call(lambda: cache.set(key, value, timeout=timeout))
            return value
        generation = _cache_call(lambda: _generation(key))
        value = compute()
        if generation is not None:
            _cache_call(lambda: _store_if_unpurged(key, value, timeout, generation))
        return value
    finally:
        _cache_call(lambda: cache.delete(lock_key))


def _compute_on_redis(
    backend: Any, key: str, compute: Callable[[], T], timeout: int, guard_writes: bool
) -> T:
    """The miss path of ``get_or_compute`` on Redis, in two round trips instead of six.

    1. One pipeline takes the lock (SET NX EX), looks at the value again (a caller that missed
       just before the previous holder stored it) and reads the key's generation.
    2. After ``compute``, one pipeline stores the value (only if the generation is unchanged,
       when ``guard_writes``) and releases the lock.
    A caller that finds the lock taken waits for the holder's value, polling, and computes it
    itself after LOCK_WAIT_SECONDS. Any Redis failure opens the breaker; the value is computed.
    """
    global _breaker_open_until
    if time.monotonic() < _breaker_open_until:
        return compute()  # Redis failed moments ago: straight to the database
    client, prefix = _redis_client(backend), backend._get_prefix()
    full_key, full_lock = prefix + key, prefix + lock_key_of(key)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    try:
        while True:
            pipe = client.pipeline(transaction=False)
            pipe.set(full_lock, uuid.uuid4().hex, nx=True, ex=LOCK_TTL_SECONDS)
            pipe.get(full_key)
            if guard_writes:
                pipe.get(prefix + generation_key(key))
            locked, raw, *generation = pipe.execute()
            if raw is not None:
                if locked:
                    client.delete(full_lock)
                return backend.serializer.loads(raw)
            if locked:
                break
            if time.monotonic() >= deadline:
                return compute()
            time.sleep(LOCK_POLL_SECONDS)
    except _CACHE_ERRORS as exc:
        _breaker_open_until = time.monotonic() + BREAKER_OPEN_SECONDS
        log.warning("cache unavailable, serving from the database: %s", exc)
        return compute()
    stored = False
    try:
        value = compute()
        dump = backend.serializer.dumps(value)
        expiry = max(backend._normalize_timeout(timeout), 0)
        pipe = client.pipeline(transaction=False)
        if guard_writes:
            seen = generation[0]
            pipe.eval(
                _STORE_IF_GENERATION,
                2,
                full_key,
                prefix + generation_key(key),
                dump,
                expiry,
                "" if seen is None else seen.decode(),
            )
        else:
            pipe.set(full_key, dump, ex=expiry or None)
        pipe.delete(full_lock)
        _cache_call(pipe.execute)
        stored = True
        return value
    finally:
        if not stored:
            _cache_call(lambda: client.delete(full_lock), always=True)


def product_key(product_id: int) -> str:
    return f"product:{product_id}"


def product_list_version() -> str:
    """The generation of every cached product list; a catalog write starts a new one.

    The version is a time-based token, not a counter, so a version key lost to eviction
    never brings back entries from an older generation.
    """
    version = cached(PRODUCT_LIST_VERSION_KEY)
    if version is None:
        fresh = str(time.time_ns())
        _cache_call(lambda: cache.add(PRODUCT_LIST_VERSION_KEY, fresh, timeout=0))
        version = _cache_call(lambda: cache.get(PRODUCT_LIST_VERSION_KEY)) or fresh
    return version


def product_list_key(version: str, params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode()).hexdigest()
    return f"{PRODUCT_LISTS_PREFIX}{version}:{digest}"


# -- purge after commit -------------------------------------------------------------------

_PENDING_KEY = "ecommerce_cache_purges"


def _pending(session: Session) -> dict[str, Any]:
    return session.info.setdefault(_PENDING_KEY, {"keys": set(), "lists": False})


def invalidate_product(session: Session, product_id: int) -> None:
    """Purge the product's detail and every product list, once the transaction commits."""
    pending = _pending(session)
    pending["keys"].add(product_key(product_id))
    pending["lists"] = True


def invalidate_product_lists(session: Session) -> None:
    """Start a new generation of product lists, once the transaction commits."""
    _pending(session)["lists"] = True


@event.listens_for(Session, "after_commit")
def _purge_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    for key in pending["keys"]:
        # New generation first, then delete: a reader that began before the commit can no
        # longer store its copy, and any copy stored before the bump is gone.
        _cache_call(lambda key=key: cache.cache.inc(generation_key(key)), always=True)
    if pending["keys"]:
        _cache_call(lambda: cache.delete_many(*pending["keys"]), always=True)
    if pending["lists"]:
        new_version = str(time.time_ns())
        _cache_call(lambda: cache.set(PRODUCT_LIST_VERSION_KEY, new_version, timeout=0), always=True)


@event.listens_for(Session, "after_rollback")
def _drop_purges_on_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def clear_all() -> None:
    """Drop every cached entry of this application (``flask cache clear``)."""
    cache.clear()
