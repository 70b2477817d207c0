"""Parts of a cached read, switched off in a process to weigh what each costs.

A benchmark's knife, never the shop's: every part is something the shop needs.

- ``request-metrics``: the per-request duration histogram and request counter
  (``RequestMetrics``; ``/healthz`` is excluded from them);
- ``cache-counters``: the catalog cache's and the per-process copy's hit counters (targets.py
  reads them to check that a cached scenario hit, so it cannot run with them off);
- ``drain``: the look-up's check of the invalidation socket (``LocalCache._drain``);
- ``etag``: the answer's ETag and Cache-Control headers and its If-None-Match check.

``benchmarks/read_path.py`` uses ``without`` around its batches (BENCH_WITHOUT). For the stack,
a copy of the tree whose ``wsgi.py`` ends with ``switch_off_from_env(app)`` runs the app with
the parts named in BENCH_WITHOUT switched off for good (docs/performance_tuning.md, "What a
cached read is made of").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

PARTS = ("request-metrics", "cache-counters", "drain", "etag")


class _NoCount:
    def inc(self, amount: float = 1) -> None:
        pass


@contextmanager
def without(app, parts: list[str]) -> Iterator[None]:
    """``parts`` of the cached read switched off in this process until the block ends."""
    from flask import Response

    import ecommerce.core.cache.local as local
    import ecommerce.core.cache.store as store
    from ecommerce.core.cache.entries import CachedJSON
    from ecommerce.core.metrics import RequestMetrics

    unknown = [part for part in parts if part not in PARTS]
    if unknown:  # before anything is patched
        raise ValueError(f"BENCH_WITHOUT: unknown part {unknown[0]!r} (one of {', '.join(PARTS)})")
    undo = []

    def patch(owner, name: str, value) -> None:
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    hooks = app.after_request_funcs[None]
    for part in parts:
        if part == "request-metrics":
            counts = [getattr(hook, "__func__", None) is RequestMetrics._count for hook in hooks]
            index = counts.index(True)
            original = hooks[index]
            hooks[index] = lambda response: response
            undo.append((hooks, index, original))
        elif part == "cache-counters":
            patch(store, "_counter", lambda entity, result: _NoCount())
            patch(local, "_HIT", _NoCount())
        elif part == "drain":
            patch(local.LocalCache, "_drain", lambda self: True)
        else:  # etag
            bare = lambda self: Response(self.body, content_type="application/json")  # noqa: E731
            patch(CachedJSON, "to_response", bare)
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            if isinstance(owner, list):
                owner[name] = value
            else:
                setattr(owner, name, value)


_SWITCHED_OFF: list = []  # held for the life of the process: a dropped one would switch back on


def switch_off_from_env(app) -> None:
    """Switch off, for the life of the process, the parts BENCH_WITHOUT names (``a+b``)."""
    parts = [part for part in os.environ.get("BENCH_WITHOUT", "").split("+") if part]
    if parts:
        switched_off = without(app, parts)
        switched_off.__enter__()
        _SWITCHED_OFF.append(switched_off)
