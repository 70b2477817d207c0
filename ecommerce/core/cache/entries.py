"""What the catalog cache holds: finished JSON with its ETag, so a hit costs one cache round trip
and no serialisation.

A service says *what* may be cached (a ``CacheEntry``: the key, and how to read the data on a
miss); the route's ``cached_response`` (ecommerce/core/blueprint.py) dumps that data with the
view's own response schema, once per fill, and the store (store.py) keeps it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Response, request

from ecommerce.core.cache.store import get_or_compute


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


# Cached entries outlive a release: a deploy's new workers read what the old ones stored (and
# during a rolling restart, the other way round). So the class is pickled under the name it has
# always had, which ecommerce/core/cache/__init__.py keeps importable.
CachedJSON.__module__ = "ecommerce.core.cache"


@dataclass(frozen=True)
class Page:
    """One page of a list, and how many items the whole list holds."""

    items: list[Any]
    total: int


@dataclass(frozen=True)
class CacheEntry:
    """A catalog value the cache may already hold: its key, and how to read the data on a miss
    (an object, a row, a list, or a ``Page``). ``guard_writes``: the key is purged by writes
    (``invalidate_product``), and a value read before such a write committed is never stored."""

    key: str
    read: Callable[[], Any]
    timeout: int
    entity: str
    guard_writes: bool = False

    def json(self, dump: Callable[[Any], Any]) -> CachedJSON:
        """The finished JSON of this entry: from the cache, or read and made with ``dump``."""

        def compute() -> CachedJSON:
            data = self.read()
            if isinstance(data, Page):
                return CachedJSON.from_data(dump(data.items), total=data.total)
            return CachedJSON.from_data(dump(data))

        return get_or_compute(self.key, compute, self.timeout, self.entity, guard_writes=self.guard_writes)
