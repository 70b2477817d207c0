"""Purges after commit: what a catalog write invalidates, and when.

Writes never purge before their transaction commits: services call ``invalidate_product`` /
``invalidate_product_lists`` / ``invalidate_shipping_network``, which queue the purge on the
SQLAlchemy session; it runs after the commit (``purge_committed``, or ``queue_purges`` into the
round trip it shares with the event notices: ecommerce/core/db/after_commit.py) and is dropped
on rollback.
"""

from __future__ import annotations

import time
from typing import Any

from flask import current_app
from flask_caching.backends.rediscache import RedisCache
from redis.client import Pipeline
from sqlalchemy.orm import Session

from ecommerce.core.cache.store import (
    PRODUCT_LIST_VERSION_KEY,
    SHIPPING_NETWORK_KEY,
    cache_call,
    generation_key,
    product_key,
    redis_client,
)
from ecommerce.extensions import cache

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


def invalidate_shipping_network(session: Session) -> None:
    """Purge the shipping quote table, once the transaction commits: a zone or a leg changed."""
    _pending(session)["keys"].add(SHIPPING_NETWORK_KEY)


def purge_committed(session: Session) -> None:
    """After the commit: what the transaction invalidated. For each key a new generation
    first, then the delete: a reader that began before the commit can no longer store its copy,
    and any copy stored before the bump is gone. On Redis, all of it in one pipelined round
    trip; deleting a key that is already gone (another purge won the race) is no error."""
    client = redis_client()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        queue_purges(session, pipe)
        if len(pipe):
            cache_call(pipe.execute, always=True)
        return
    pending = session.info.pop(_PENDING_KEY, None)
    if not pending:
        return
    keys = sorted(pending["keys"])
    new_version = str(time.time_ns()) if pending["lists"] else None
    for key in keys:
        cache_call(lambda key=key: cache.cache.inc(generation_key(key)), always=True)
    if keys:
        cache_call(lambda: cache.delete_many(*keys), always=True)
    if new_version is not None:
        cache_call(lambda: cache.set(PRODUCT_LIST_VERSION_KEY, new_version, timeout=0), always=True)


def queue_purges(session: Session, pipe: Pipeline) -> None:
    """``purge_committed`` on Redis, its commands added to ``pipe``, a pipeline on the cache's
    Redis that the caller sends (after_commit.py: with the event notices, in one round trip)."""
    pending = session.info.pop(_PENDING_KEY, None)
    if pending:
        new_version = str(time.time_ns()) if pending["lists"] else None
        _purge_commands(pipe, sorted(pending["keys"]), new_version)


def _purge_commands(pipe: Pipeline, keys: list[str], new_version: str | None) -> None:
    prefix = current_app.config["CACHE_KEY_PREFIX"]
    for key in keys:
        pipe.incr(prefix + generation_key(key))
    if keys:
        pipe.delete(*(prefix + key for key in keys))
    if new_version is not None:
        pipe.set(prefix + PRODUCT_LIST_VERSION_KEY, RedisCache.serializer.dumps(new_version))


def forget_purges(session: Session) -> None:
    """After a rollback: nothing to purge."""
    session.info.pop(_PENDING_KEY, None)
