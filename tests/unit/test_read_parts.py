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
    with read_parts.without(app, list(read_parts.PARTS)):
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
