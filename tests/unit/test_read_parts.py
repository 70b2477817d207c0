"""benchmarks/read_parts.py: parts of a cached read switched off to weigh them, and back on."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import read_parts  # noqa: E402

import ecommerce.core.cache.local as local  # noqa: E402
import ecommerce.core.cache.store as store  # noqa: E402
from ecommerce.core.cache.entries import CachedJSON  # noqa: E402


def _state(app) -> tuple:
    return (
        local.LocalCache._drain,
        local._HIT,
        store._counter,
        CachedJSON.to_response,
        list(app.after_request_funcs[None]),
    )


def _etag(app) -> str | None:
    with app.test_request_context("/api/products/1/"):
        return CachedJSON(b"{}", '"abc"').to_response().headers.get("ETag")


def test_every_part_is_off_inside_the_block_and_back_on_after_it(app):
    shipped = _state(app)
    assert _etag(app) == '"abc"'
    with read_parts.without(app, [part for part in read_parts.PARTS if part != "poll-drain"]):
        switched = _state(app)
        assert all(now is not then for now, then in zip(switched[:4], shipped[:4], strict=True))
        assert switched[4] != shipped[4]  # the request metrics' hook replaced
        assert len(switched[4]) == len(shipped[4])
        assert _etag(app) is None
    assert _state(app) == shipped
    assert _etag(app) == '"abc"'


def test_an_unknown_part_is_refused_and_nothing_stays_switched(app):
    shipped = _state(app)
    with pytest.raises(ValueError, match="unknown part"):
        with read_parts.without(app, ["drain", "no-such-part"]):
            pass
    assert _state(app) == shipped


def test_a_part_that_fails_halfway_leaves_nothing_switched(app):
    """The drain is patched first; the request metrics' hook, named twice, is not found the
    second time: the drain is put back too."""
    shipped = _state(app)
    with pytest.raises(ValueError):
        with read_parts.without(app, ["drain", "request-metrics", "request-metrics"]):
            pass
    assert _state(app) == shipped


def test_the_poll_drain_asks_the_shipped_drain_only_when_something_came_in():
    """A LocalCache-like object on a real socket pair: the shipped drain is called when the
    socket is readable, or while part of a message is still in (it answered False)."""
    import socket
    from types import SimpleNamespace

    calls = []
    answers = iter([False, True, True])

    def shipped(cache):
        calls.append(cache)
        return next(answers)

    ours, theirs = socket.socketpair()
    try:
        cache = SimpleNamespace(_connection=SimpleNamespace(_sock=ours))
        drain = read_parts._poll_first(shipped)
        assert drain(cache) is True and calls == []  # nothing came in
        theirs.sendall(b"*3")
        assert drain(cache) is False and len(calls) == 1  # part of a message
        ours.recv(16)  # as redis-py would have taken the bytes off the socket
        assert drain(cache) is True and len(calls) == 2  # asked again, although nothing came in
        assert drain(cache) is True and len(calls) == 2
        theirs.sendall(b"x")
        assert drain(cache) is True and len(calls) == 3
    finally:
        ours.close()
        theirs.close()


def test_switch_off_from_env_holds_for_the_life_of_the_process(app, monkeypatch):
    """The context manager is kept: collected, it would switch the parts back on at once."""
    shipped = _state(app)
    monkeypatch.setenv("BENCH_WITHOUT", "drain+etag")
    read_parts.switch_off_from_env(app)
    try:
        gc.collect()
        assert local.LocalCache._drain is not shipped[0]
        assert _etag(app) is None
        assert store._counter is shipped[2]  # not named: left on
    finally:
        read_parts._SWITCHED_OFF.pop().__exit__(None, None, None)
    assert _state(app) == shipped
