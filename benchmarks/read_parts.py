"""Parts of a cached read, switched off in a process to weigh what each costs.

A benchmark's knife, never the shop's: every part is something the shop needs.

- ``request-metrics``: the per-request duration histogram and request counter
  (``RequestMetrics``; ``/healthz`` is excluded from them);
- ``cache-counters``: the catalog cache's and the per-process copy's hit counters (targets.py
  reads them to check that a cached scenario hit, so it cannot run with them off);
- ``drain``: the look-up's check of the invalidation socket (``LocalCache._drain``);
- ``etag``: the answer's ETag and Cache-Control headers and its If-None-Match check.

One more is not switched off but changed, to weigh a cheaper way of doing it:

- ``poll-drain``: the drain asks the socket's descriptor with a zero-timeout ``poll`` first,
  and calls the shipped drain only when something came in. redis-py has no public way to the
  descriptor: this reaches into its connection's private ``_sock``, which the shop does not.

``benchmarks/read_path.py`` uses ``without`` around its batches (BENCH_WITHOUT). For the stack,
a copy of the tree whose ``wsgi.py`` ends with ``switch_off_from_env(app)`` runs the app with
the parts named in BENCH_WITHOUT switched off for good (docs/performance_tuning.md, "What a
cached read is made of").
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from contextlib import contextmanager

PARTS = ("request-metrics", "cache-counters", "drain", "etag", "poll-drain")


class _NoCount:
    def inc(self, amount: float = 1) -> None:
        pass


def check(parts: list[str]) -> None:
    """Refuse a name that is not a part (before anything is patched)."""
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        raise ValueError(f"BENCH_WITHOUT: unknown part {unknown[0]!r} (one of {', '.join(PARTS)})")


def _poll_class():
    """The operating system's ``poll``, also under gevent's monkey patching (which removes it
    from ``select``): a zero timeout never waits, so there is nothing to cooperate on."""
    try:
        from gevent.monkey import get_original
    except ImportError:
        return select.poll
    return get_original("select", "poll")


def _poll_first(shipped_drain):
    pollers: dict[int, list] = {}  # per LocalCache: [its connection's socket, poll, last answer]

    def drain(self) -> bool:
        connection = self._connection
        sock = None if connection is None else connection._sock  # noqa: SLF001 - the point of it
        if sock is None:
            return shipped_drain(self)
        entry = pollers.get(id(self))
        if entry is None or entry[0] is not sock:
            poller = _poll_class()()
            poller.register(sock.fileno(), select.POLLIN)
            entry = pollers[id(self)] = [sock, poller, True]
        # After a drain that answered True redis-py's buffer is empty (its ``can_read`` is False
        # only then): nothing is waiting unless the socket is readable. After one that answered
        # False, part of a message is in the buffer, and the shipped drain is asked again.
        if entry[2] and not entry[1].poll(0):
            return True
        entry[2] = shipped_drain(self)
        return entry[2]

    return drain


@contextmanager
def without(app, parts: list[str]) -> Iterator[None]:
    """``parts`` of the cached read switched off in this process until the block ends."""
    from flask import Response

    import ecommerce.core.cache.local as local
    import ecommerce.core.cache.store as store
    from ecommerce.core.cache.entries import CachedJSON
    from ecommerce.core.metrics import RequestMetrics

    check(parts)
    undo = []

    def patch(owner, name: str, value) -> None:
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    hooks = app.after_request_funcs[None]
    try:
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
            elif part == "poll-drain":
                patch(local.LocalCache, "_drain", _poll_first(local.LocalCache._drain))
            else:  # etag
                bare = lambda self: Response(self.body, content_type="application/json")  # noqa: E731
                patch(CachedJSON, "to_response", bare)
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
