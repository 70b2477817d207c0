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
from sqlalchemy.exc import DBAPIError

from ecommerce.errors import ServiceUnavailable

BATCH_SIZES = Histogram(
    "ecommerce_checkout_batch_size",
    "Checkouts placed by one call of place_orders()",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

# How long a member waits in the queue for its turn before it gives up with a 503 (nothing of it
# placed): below nginx's proxy_read_timeout (35 s), so the client hears the answer. A member
# whose batch is already running waits for that call's end, however long: only the call can say
# whether its order was placed (the call is bounded by DB_STATEMENT_TIMEOUT_MS).
QUEUE_WAIT_SECONDS = 30.0


@dataclass(eq=False)
class _Member:
    order: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False
    taken: bool = False  # in a batch whose call has started
    result: dict[str, Any] | None = None
    error: BaseException | None = None

    def outcome(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class CheckoutBatcher:
    """One per app in each worker process (``batcher_of``); ``submit`` is called from each
    request's thread or greenlet (gevent patches ``threading``). Invariant: while ``_busy``,
    exactly one member leads, and it is running a call or about to; every queued member is
    waiting in ``submit``."""

    def __init__(self, queue_wait: float = QUEUE_WAIT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Member] = []
        self._busy = False
        self._queue_wait = queue_wait

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
            self._wait(member)
            if not member.leads:
                return member.outcome()
        self._lead(call, member, max(1, max_batch))
        return member.outcome()

    def _wait(self, member: _Member) -> None:
        """Until the member's batch has been called, or it has been made the leader."""
        try:
            if member.done.wait(self._queue_wait):
                return
            with self._lock:
                if member.leads or member.taken:
                    gave_up = False
                else:  # still queued: leave, nothing of it was placed
                    self._queue.remove(member)
                    gave_up = True
            if gave_up:
                raise ServiceUnavailable("Too many checkouts at once; please try again.", retry_after=2)
            member.done.wait()  # made leader meanwhile, or its batch's call is running
        except BaseException:
            # Interrupted (the request's greenlet killed): leave the queue, and if it was made
            # the leader, hand that on, so that the members behind it are not left waiting.
            with self._lock:
                if member in self._queue:
                    self._queue.remove(member)
                if member.leads:
                    self._hand_on()
            raise

    def _hand_on(self) -> None:
        """With the lock held: the first queued member leads next, or nobody is busy."""
        if self._queue:
            successor = self._queue[0]
            successor.leads = True
            successor.done.set()
        else:
            self._busy = False

    def _lead(self, call, me: _Member, max_batch: int) -> None:
        with self._lock:  # the leader is first in the queue: its batch holds it
            batch, self._queue = self._queue[:max_batch], self._queue[max_batch:]
            for member in batch:
                member.taken = True
        try:
            results = call([member.order for member in batch])
            for member, result in zip(batch, results, strict=True):
                member.result = result
        except BaseException as error:
            me.error = error
            for member in batch:
                if member is not me:
                    member.error = _for_another(error)
        finally:
            with self._lock:
                self._hand_on()
            for member in batch:
                if member is not me:
                    member.done.set()
        BATCH_SIZES.observe(len(batch))


def _for_another(error: BaseException) -> Exception:
    """A batch's failure as one of its other members answers it: its own exception object (the
    leader's is raised in the leader), 503 when the database was lost (whether the call
    committed is unknown, as for a checkout alone), an error otherwise."""
    if isinstance(error, DBAPIError) or not isinstance(error, Exception):
        unavailable = ServiceUnavailable(
            "The checkout could not reach the database; please try again.", retry_after=2
        )
        unavailable.__cause__ = error
        return unavailable
    failed = RuntimeError(f"the checkout batch failed: {type(error).__name__}")
    failed.__cause__ = error
    return failed


def batcher_of(app) -> CheckoutBatcher:
    """The app's batcher: one per app in each process (a batch is placed on the database of the
    app its members came through)."""
    batcher = app.extensions.get("checkout_batcher")
    if batcher is None:
        batcher = app.extensions.setdefault("checkout_batcher", CheckoutBatcher())
    return batcher
