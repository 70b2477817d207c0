"""The checkout batcher (ecommerce/orders/batching.py) on its own: who calls, with whom, and who
gets which outcome. The calls are stand-ins that record their batches; PostgreSQL's side of a
batch is tested in tests/integration/test_checkout_batches.py."""

from __future__ import annotations

import threading
import time

import pytest

from ecommerce.errors import ServiceUnavailable
from ecommerce.orders import batching
from ecommerce.orders.batching import CheckoutBatcher


class _Gate:
    """A call that records each batch and holds the first one until released."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def __call__(self, members: list[dict]) -> list[dict]:
        numbers = [member["n"] for member in members]
        self.batches.append(numbers)
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
            if self.fail_first:
                raise RuntimeError("connection lost")
        return [{"outcome": "placed", "n": n} for n in numbers]


def _submit_all(batcher: CheckoutBatcher, gate: _Gate, count: int, max_batch: int) -> dict[int, object]:
    """Member 0 first (it leads and is held in its call), then the others, which queue."""
    outcomes: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            outcomes[n] = batcher.submit({"n": n}, gate, max_batch)
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[n] = error

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    others = [threading.Thread(target=submit, args=(n,)) for n in range(1, count)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(batcher._queue) < count - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(batcher._queue) == count - 1, "the others did not queue behind the running call"
    gate.release.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    return outcomes


def test_a_lone_checkout_calls_at_once_with_itself_alone() -> None:
    batcher = CheckoutBatcher()
    calls: list[list[dict]] = []
    outcome = batcher.submit({"n": 7}, lambda members: calls.append(members) or [{"n": 7}], 32)
    assert outcome == {"n": 7} and calls == [[{"n": 7}]]
    assert not batcher._busy and batcher._queue == []


def test_checkouts_that_arrive_during_a_call_go_together_in_the_next() -> None:
    batcher, gate = CheckoutBatcher(), _Gate()
    outcomes = _submit_all(batcher, gate, 6, max_batch=32)
    assert gate.batches == [[0], [1, 2, 3, 4, 5]]
    assert outcomes == {n: {"outcome": "placed", "n": n} for n in range(6)}, "each gets its own outcome"
    assert not batcher._busy and batcher._queue == []


def test_a_batch_holds_at_most_max_batch_checkouts() -> None:
    batcher, gate = CheckoutBatcher(), _Gate()
    outcomes = _submit_all(batcher, gate, 6, max_batch=2)
    assert gate.batches == [[0], [1, 2], [3, 4], [5]]
    assert set(outcomes) == set(range(6))


def test_a_failed_call_fails_its_own_batch_only_and_the_queue_goes_on() -> None:
    batcher, gate = CheckoutBatcher(), _Gate(fail_first=True)
    outcomes = _submit_all(batcher, gate, 4, max_batch=32)
    assert isinstance(outcomes[0], RuntimeError)
    assert gate.batches == [[0], [1, 2, 3]]
    assert outcomes[1] == {"outcome": "placed", "n": 1}
    assert not batcher._busy


def test_a_failed_call_fails_every_member_of_its_batch() -> None:
    batcher = CheckoutBatcher()
    held = threading.Event()
    release = threading.Event()
    batches: list[list[int]] = []

    def call(members: list[dict]) -> list[dict]:
        batches.append([member["n"] for member in members])
        if len(batches) == 1:
            held.set()
            assert release.wait(10)
            return [{"n": 0}]
        raise RuntimeError("connection lost")

    results: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            results[n] = batcher.submit({"n": n}, call, 32)
        except RuntimeError as error:
            results[n] = error

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert held.wait(10)
    others = [threading.Thread(target=submit, args=(n,)) for n in (1, 2, 3)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 3:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert batches == [[0], [1, 2, 3]]
    assert results[0] == {"n": 0}
    assert all(isinstance(results[n], RuntimeError) for n in (1, 2, 3))
    assert not batcher._busy and batcher._queue == []


@pytest.mark.parametrize("max_batch", [0, -3])
def test_a_batch_always_holds_its_leader(max_batch: int) -> None:
    batcher = CheckoutBatcher()
    assert batcher.submit({"n": 1}, lambda members: [{"n": m["n"]} for m in members], max_batch) == {"n": 1}


def test_a_member_that_waits_too_long_in_the_queue_leaves_it_and_the_queue_goes_on() -> None:
    """The running call outlasts the queue wait: the queued member gives up with a 503 and
    nothing of it is placed; the batcher is not left with a leader that is gone."""
    batcher = CheckoutBatcher(queue_wait=0.2)
    gate = _Gate()
    outcomes: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            outcomes[n] = batcher.submit({"n": n}, gate, 32)
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[n] = error

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    second = threading.Thread(target=submit, args=(1,))
    second.start()
    second.join(10)
    assert isinstance(outcomes[1], ServiceUnavailable)
    assert batcher._queue == []
    gate.release.set()
    first.join(10)
    assert outcomes[0] == {"outcome": "placed", "n": 0}
    assert gate.batches == [[0]], "the member that gave up was placed anyway"
    assert not batcher._busy
    assert batcher.submit({"n": 2}, gate, 32) == {"outcome": "placed", "n": 2}


def test_a_member_made_leader_but_interrupted_hands_the_lead_on(monkeypatch) -> None:
    """The member next in line is killed (its request's greenlet) as it is made the leader:
    the one behind it leads instead, and nothing waits forever."""

    class Interrupted(BaseException):
        pass

    class DyingEvent(threading.Event):
        def wait(self, timeout=None):
            if super().wait(timeout):
                raise Interrupted
            return False

    make_member = batching._Member

    def member_of(order: dict):
        member = make_member(order)
        if order["n"] == 1:
            member.done = DyingEvent()
        return member

    monkeypatch.setattr(batching, "_Member", member_of)
    batcher, gate = CheckoutBatcher(), _Gate()
    outcomes: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            outcomes[n] = batcher.submit({"n": n}, gate, 32)
        except BaseException as error:  # noqa: BLE001 - the outcome under test
            outcomes[n] = error

    threads = [threading.Thread(target=submit, args=(0,))]
    threads[0].start()
    assert gate.entered.wait(10)
    for n in (1, 2):
        threads.append(threading.Thread(target=submit, args=(n,)))
        threads[-1].start()
        while len(batcher._queue) < n:
            time.sleep(0.01)
    gate.release.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert isinstance(outcomes[1], Interrupted)
    assert outcomes[2] == {"outcome": "placed", "n": 2}
    assert gate.batches == [[0], [2]]
    assert not batcher._busy and batcher._queue == []


def test_the_other_members_get_their_own_error_and_a_503_when_the_database_is_lost() -> None:
    from sqlalchemy.exc import OperationalError

    batcher = CheckoutBatcher()
    held, release = threading.Event(), threading.Event()
    lost = OperationalError("SELECT place_orders(...)", {}, Exception("server closed the connection"))
    calls: list[list[int]] = []

    def call(members: list[dict]) -> list[dict]:
        calls.append([member["n"] for member in members])
        if len(calls) == 1:
            held.set()
            assert release.wait(10)
            return [{"n": 0}]
        raise lost

    results: dict[int, object] = {}

    def submit(n: int) -> None:
        try:
            results[n] = batcher.submit({"n": n}, call, 32)
        except Exception as error:  # noqa: BLE001 - the outcome under test
            results[n] = error

    threads = [threading.Thread(target=submit, args=(0,))]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=submit, args=(n,)) for n in (1, 2)]
    for thread in threads[1:]:
        thread.start()
    while len(batcher._queue) < 2:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    assert results[1] is lost  # the leader of the failed batch: its own error
    assert isinstance(results[2], ServiceUnavailable) and results[2].__cause__ is lost
