"""Checkouts that arrive together are placed together: one call of ``place_orders()`` per batch.

A flash sale makes every buyer's checkout update the same product row. Its lock passes from one
transaction to the next, and each handover waits for the next backend to be woken and scheduled
on a CPU that the app's own workers keep busy; with 50 buyers on one product that handover,
not the work of an order, set the pace (docs/performance_tuning.md, "Checkout batches").

So, in each worker process, one checkout at a time calls the database. The checkouts that
arrive while it runs wait, and the first of them then calls for all of them at once (at most
CHECKOUT_BATCH_MAX): the row changes hands once per batch. A lone checkout finds nobody
running and goes at once: batching adds no wait when there is no queue, and the batch grows
only as far as the queue does (the group commit of a database, one level up).

Each member's outcome is its own: ``place_orders()`` places them one after another in one
transaction (migration 0009), a member refused for stock or an empty cart changes nothing,
and the others stand. An error of the call itself (the connection lost) is every member's
error, as it would have been for each alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from ecommerce.errors import ServiceUnavailable

BATCH_SIZES = Histogram(
    "ecommerce_checkout_batch_size",
    "Checkouts placed by one call of place_orders()",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

# A member waits at most this long for the call its batch is in (the call itself is bounded by
# the database's statement timeout; this only guards against a leader that never returns).
WAIT_SECONDS = 60.0


@dataclass(eq=False)
class _Member:
    order: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    result: dict[str, Any] | None = None
    error: BaseException | None = None

    def outcome(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class CheckoutBatcher:
    """One per app in each worker process (``batcher_of``); ``submit`` is called from each
    request's thread or greenlet (gevent patches ``threading``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Member] = []
        self._busy = False

    def submit(
        self,
        order: dict[str, Any],
        call: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        max_batch: int,
    ) -> dict[str, Any]:
        """Place ``order`` (the arguments of place_order(), as JSON values) and return its
        outcome, as place_order() answers it. ``call`` places a batch on the caller's own
        connection: it runs only if this caller ends up calling for its batch."""
        member = _Member(order)
        with self._lock:
            self._queue.append(member)
            member.leads = not self._busy
            self._busy = True
        if not member.leads:
            if not member.done.wait(WAIT_SECONDS):
                raise ServiceUnavailable("The checkout took too long; please try again.", retry_after=2)
            if not member.leads:
                return member.outcome()
        self._lead(call, member, max(1, max_batch))
        return member.outcome()

    def _lead(self, call, me: _Member, max_batch: int) -> None:
        with self._lock:  # the leader is first in the queue: its batch holds it
            batch, self._queue = self._queue[:max_batch], self._queue[max_batch:]
        try:
            results = call([member.order for member in batch])
            for member, result in zip(batch, results, strict=True):
                member.result = result
        except BaseException as error:  # every member's error, as it would be each one's alone
            for member in batch:
                member.error = error
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.done.set()
                else:
                    self._busy = False
            BATCH_SIZES.observe(len(batch))
            for member in batch:
                if member is not me:
                    member.done.set()


def batcher_of(app) -> CheckoutBatcher:
    """The app's batcher: one per app in each process (a batch is placed on the database of the
    app its members came through)."""
    batcher = app.extensions.get("checkout_batcher")
    if batcher is None:
        batcher = app.extensions.setdefault("checkout_batcher", CheckoutBatcher())
    return batcher
