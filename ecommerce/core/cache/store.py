"""The catalog cache's store: stampede-safe fills, the catalog's keys, reads that survive a dead
cache (any cache error opens a short circuit breaker and the read is answered from the database).

What is cached, and how a service says so, is in entries.py.

Writes never purge before their transaction commits: see purge.py.

On Redis, Flask-Caching's RedisCache runs on a redis-py client of ours (``redis_cache``, a
custom backend as Flask-Caching documents them), so that the scripts of a miss and the purge's
pipeline use the same connections, key prefix and serializer as ``cache.get``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Flask, current_app
from flask_caching.backends.rediscache import RedisCache
from prometheus_client import Counter
from redis.exceptions import RedisError

from ecommerce.core.cache.local import LocalCache
from ecommerce.extensions import cache

log = logging.getLogger(__name__)

CACHE_REQUESTS = Counter("ecommerce_cache_requests_total", "Catalog cache look-ups", ["entity", "result"])

LOCK_TTL_SECONDS = 10
LOCK_WAIT_SECONDS = 3.0
LOCK_POLL_SECONDS = 0.02
BREAKER_OPEN_SECONDS = 2.0
PRODUCT_LISTS_PREFIX = "products:list:"
PRODUCT_LIST_VERSION_KEY = PRODUCT_LISTS_PREFIX + "version"
# The quote table of the whole carrier network (ecommerce/shipping/services.py).
SHIPPING_PREFIX = "shipping:"
SHIPPING_NETWORK_KEY = SHIPPING_PREFIX + "network"

_CACHE_ERRORS = (RedisError, OSError)
T = TypeVar("T")
_breaker_open_until = 0.0


def cache_call(operation: Callable[[], Any], default: Any = None, *, always: bool = False) -> Any:
    """Run one cache operation; on a cache failure open the breaker and return ``default``.

    Reads skip the cache while the breaker is open; purges (``always``) are tried anyway, so a
    write is never left unpurged merely because an earlier read failed.
    """
    if not always and time.monotonic() < _breaker_open_until:
        return default
    try:
        return operation()
    except _CACHE_ERRORS as exc:
        note_cache_failure(exc)
        return default


def note_cache_failure(error: Exception) -> None:
    """A cache operation failed: open the breaker (reads skip the cache for a while)."""
    global _breaker_open_until
    if isinstance(error, _CACHE_ERRORS):
        _breaker_open_until = time.monotonic() + BREAKER_OPEN_SECONDS
        log.warning("cache unavailable, serving from the database: %s", error)


@functools.cache
def _counter(entity: str, result: str):
    return CACHE_REQUESTS.labels(entity, result)


def cached(key: str) -> Any:
    """The shared cache's value of ``key`` (None on a miss), through this process's copy of it
    when there is one (core/cache/local.py)."""
    return _through_local(key, lambda: cache_call(lambda: cache.get(key)))


# Every Redis call of the catalog cache, and of the limiter and the read-your-writes tokens,
# gives up quickly: a dead Redis must cost a request milliseconds, not seconds.
REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}
_CLIENT = "catalog_cache_redis"  # app.extensions: the redis-py client under the RedisCache


def redis_cache(app: Flask, config: dict[str, Any], args: list[Any], options: dict[str, Any]) -> RedisCache:
    """Flask-Caching's custom backend hook (``CACHE_TYPE`` names this function): its RedisCache
    on a redis-py client made here and kept in ``app.extensions``."""
    client = redis.Redis.from_url(config["CACHE_REDIS_URL"], **REDIS_OPTIONS)
    app.extensions[_CLIENT] = client
    return RedisCache(
        client,
        default_timeout=options["default_timeout"],
        key_prefix=config["CACHE_KEY_PREFIX"],
        ignore_delete_many_errors=True,
    )


def init_local_cache(app: Flask) -> None:
    """After cache.init_app: a per-process layer over a Redis cache, unless turned off."""
    seconds = app.config["LOCAL_CACHE_SECONDS"]
    if seconds <= 0 or _CLIENT not in app.extensions:
        return
    prefix = app.config["CACHE_KEY_PREFIX"]
    app.extensions["local_cache"] = LocalCache(
        app.config["CACHE_REDIS_URL"],
        [prefix + "product:", prefix + PRODUCT_LISTS_PREFIX, prefix + SHIPPING_PREFIX],
        seconds,
        app.config["LOCAL_CACHE_MAX_ENTRIES"],
    )


def redis_client() -> redis.Redis | None:
    """The Redis client under the cache; None for the in-process caches."""
    return current_app.extensions.get(_CLIENT)


def _acquire_lock(key: str) -> bool:
    """The fill lock on an in-process cache (on Redis, ``_RedisFill`` takes it)."""
    return bool(cache.cache.add(key, 1, timeout=LOCK_TTL_SECONDS))


# The two scripts of a miss on Redis (``_RedisFill``). A script runs atomically, so no write can
# slip in between its steps, and each is one round trip.
#
# KEYS: value, lock[, generation]. ARGV: lock token, lock TTL. The value if Redis has it, as
# {1, value}; otherwise the fill lock is tried (SET NX EX) and the key's generation read, as
# {0, locked, generation} (generation '' when there is none or it is not asked for).
_GET_OR_LOCK = """
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
local locked = 0
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then locked = 1 end
local generation = ''
if KEYS[3] then generation = redis.call('GET', KEYS[3]) or '' end
return {0, locked, generation}
"""
# KEYS: value, lock[, generation]. ARGV: value, expiry (0: none), lock token, generation seen,
# '1' to store ('0' only releases the lock). Stores the value unless a write has purged the key
# since the reader began (the generation it saw is no longer the current one), then releases
# the lock if it is still this filler's (it expires after LOCK_TTL_SECONDS and may be another's).
_STORE_AND_UNLOCK = """
local stored = 0
if ARGV[5] == '1' and (not KEYS[3] or (redis.call('GET', KEYS[3]) or '') == ARGV[4]) then
  if tonumber(ARGV[2]) > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[1])
  end
  stored = 1
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return stored
"""


def lock_key_of(key: str) -> str:
    """The key of the lock one filler of ``key`` holds. Outside the tracked prefixes (``product:``,
    ``products:list:``, ``shipping:``): taking and releasing it is no news to the per-process
    caches."""
    return "lock:" + key


def generation_key(key: str) -> str:
    return key + ":gen"


def _generation(key: str) -> str:
    value = cache.get(generation_key(key))
    return "" if value is None else str(value)


def _store_if_unpurged(key: str, value: Any, timeout: int, generation: str) -> None:
    """On an in-process cache: no greenlet switch between this check and the set."""
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
    client = redis_client()
    if client is not None:
        fill = _RedisFill(client, key, guard_writes)
        hit = _through_local(key, fill.get_or_lock)
        if hit is not None:
            _counter(entity, "hit").inc()
            return hit
        _counter(entity, "miss").inc()
        return fill.compute(compute, timeout)

    # In-process caches (SimpleCache): the same steps, one call each.
    hit = cached(key)
    if hit is not None:
        _counter(entity, "hit").inc()
        return hit
    _counter(entity, "miss").inc()
    lock_key = lock_key_of(key)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not cache_call(lambda: _acquire_lock(lock_key), default=True):
        # Another request is computing this key: wait for its result rather than pile on the
        # database, and take the lock over if the holder finishes without storing a value.
        if time.monotonic() >= deadline:
            return compute()
        time.sleep(LOCK_POLL_SECONDS)
        hit = cache_call(lambda: cache.get(key))
        if hit is not None:
            return hit
    try:
        # Look again under the lock: a caller that missed just before the previous holder
        # stored the value and released the lock would otherwise compute it a second time.
        hit = cache_call(lambda: cache.get(key))
        if hit is not None:
            return hit
        if not guard_writes:
            value = compute()
            cache_call(lambda: cache.set(key, value, timeout=timeout))
            return value
        generation = cache_call(lambda: _generation(key))
        value = compute()
        if generation is not None:
            cache_call(lambda: _store_if_unpurged(key, value, timeout, generation))
        return value
    finally:
        cache_call(lambda: cache.delete(lock_key))


def _through_local(key: str, load: Callable[[], Any]) -> Any:
    """``load()`` (a read of Redis), through this process's copy of the cache when there is one."""
    local: LocalCache | None = current_app.extensions.get("local_cache")
    if local is None:
        return load()
    return local.get_or_load(current_app.config["CACHE_KEY_PREFIX"] + key, load)


def _loads(raw: bytes) -> Any:
    """A stored value, or None when it cannot be unpickled here."""
    try:
        return RedisCache.serializer.loads(raw)
    except Exception as error:  # noqa: BLE001 - any unreadable entry is a miss, never a 500
        log.warning("dropping a cache entry this release cannot read: %r", error)
        return None


_scripts: dict[int, tuple[Any, Any]] = {}


def _scripts_of(client: Any) -> tuple[Any, Any]:
    """The two fill scripts, registered with ``client`` (EVALSHA; loaded again after a Redis
    restart by redis-py on NOSCRIPT)."""
    scripts = _scripts.get(id(client))
    if scripts is None or scripts[0].registered_client is not client:
        scripts = (client.register_script(_GET_OR_LOCK), client.register_script(_STORE_AND_UNLOCK))
        _scripts[id(client)] = scripts
    return scripts


class _RedisFill:
    """The miss path of ``get_or_compute`` on Redis, in two round trips in all.

    1. ``get_or_lock`` (one script) returns the value if Redis has it; otherwise it takes the fill
       lock if it is free and reads the key's generation. It is the loader of the per-process
       cache, so a local miss that Redis answers costs that one round trip and nothing more.
    2. After ``compute``, one script stores the value (only if the generation is unchanged, when
       ``guard_writes``) and releases the lock.
    A caller that finds the lock taken waits for the holder's value, polling, and computes it
    itself after LOCK_WAIT_SECONDS. Any Redis failure opens the breaker; the value is computed.
    """

    def __init__(self, client: redis.Redis, key: str, guard_writes: bool) -> None:
        self.client = client
        prefix = current_app.config["CACHE_KEY_PREFIX"]
        self.keys = [prefix + key, prefix + lock_key_of(key)]
        if guard_writes:
            self.keys.append(prefix + generation_key(key))
        self.token = ""
        self.locked = False
        self.generation = ""
        self.redis_down = False

    def get_or_lock(self) -> Any:
        """The cached value, or None (a miss: the lock and generation are noted)."""
        global _breaker_open_until
        if time.monotonic() < _breaker_open_until:
            self.redis_down = True  # Redis failed moments ago: straight to the database
            return None
        self.token = uuid.uuid4().hex
        try:
            found, *rest = _scripts_of(self.client)[0](keys=self.keys, args=[self.token, LOCK_TTL_SECONDS])
        except _CACHE_ERRORS as exc:
            _breaker_open_until = time.monotonic() + BREAKER_OPEN_SECONDS
            log.warning("cache unavailable, serving from the database: %s", exc)
            self.redis_down = True
            return None
        if found:
            value = _loads(rest[0])
            if value is not None:
                return value
            # An entry this release cannot read: drop it, so that the next look-up (this
            # filler's, polling) takes the lock and stores one it can.
            cache_call(lambda: self.client.delete(self.keys[0]), always=True)
            return None
        self.locked, generation = bool(rest[0]), rest[1]
        self.generation = generation.decode() if isinstance(generation, bytes) else str(generation)
        return None

    def compute(self, compute: Callable[[], T], timeout: int) -> T:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while not (self.locked or self.redis_down):
            if time.monotonic() >= deadline:
                return compute()
            time.sleep(LOCK_POLL_SECONDS)
            hit = self.get_or_lock()  # the holder's value, or the lock if the holder gave up
            if hit is not None:
                return hit
        if self.redis_down:
            return compute()
        try:
            value = compute()
        except BaseException:
            self._unlock()
            raise
        expiry = max(int(timeout), 0)
        dump = RedisCache.serializer.dumps(value)
        store = _scripts_of(self.client)[1]
        cache_call(lambda: store(keys=self.keys, args=[dump, expiry, self.token, self.generation, "1"]))
        return value

    def _unlock(self) -> None:
        """Release the lock after a failed compute (only if it is still this filler's)."""
        store = _scripts_of(self.client)[1]
        cache_call(lambda: store(keys=self.keys, args=["", 0, self.token, "", "0"]), always=True)


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
        cache_call(lambda: cache.add(PRODUCT_LIST_VERSION_KEY, fresh, timeout=0))
        version = cache_call(lambda: cache.get(PRODUCT_LIST_VERSION_KEY)) or fresh
    return version


def product_list_key(version: str, params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode()).hexdigest()
    return f"{PRODUCT_LISTS_PREFIX}{version}:{digest}"


def clear_all() -> None:
    """Drop every cached entry of this application (``flask cache clear``)."""
    cache.clear()
