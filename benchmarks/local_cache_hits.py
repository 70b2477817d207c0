"""Hits of the per-process catalog cache: ns per ``get_or_load`` on a warm key, the version of 230caaa
(its own RESP reader on a raw socket, ``os.read`` per hit) against ecommerce/core/cache/local.py
(redis-py's public connection API, ``can_read(timeout=0)`` per hit). Both run in one process,
alternated round by round, with plain threads and under ``gevent.monkey`` (a process each); the
table gives medians of the rounds.

    .venv/bin/python benchmarks/local_cache_hits.py
    BENCH_HITS=500000 BENCH_ROUNDS=9 .venv/bin/python benchmarks/local_cache_hits.py

Needs Redis (BENCH_REDIS_URL, database 8 of 127.0.0.1:6379 by default) and git. A FLUSHDB or
FLUSHALL anywhere on that Redis empties both copies: such misses are counted in the last column.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD = "230caaa:ecommerce/core/local_cache.py"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
HITS = int(os.environ.get("BENCH_HITS", 200_000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def implementations() -> dict:
    from prometheus_client import REGISTRY

    source = subprocess.run(["git", "show", OLD], cwd=ROOT, check=True, capture_output=True, text=True)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "old_local_cache.py"
        path.write_text(source.stdout)
        old = load_module("old_local_cache", path)
    # Both register the same metric names; the old counters leave the registry and still count.
    for metric in (old.LOCAL_CACHE_REQUESTS, old.LOCAL_CACHE_INVALIDATIONS, old.LOCAL_CACHE_RECONNECTS):
        REGISTRY.unregister(metric)
    new = load_module("new_local_cache", ROOT / "ecommerce" / "core" / "cache" / "local.py")
    return {"old": old, "new": new}


def ns_per_hit(layer, key: str, loads: list[int]) -> float:
    def load() -> str:
        loads[0] += 1
        return "value"

    layer.get_or_load(key, load)
    get_or_load = layer.get_or_load
    start = time.perf_counter_ns()
    for _ in range(HITS):
        get_or_load(key, load)
    return (time.perf_counter_ns() - start) / HITS


def measure(mode: str) -> None:
    prefix = f"bench-local-cache-{uuid.uuid4().hex[:8]}:"
    layers = {
        name: module.LocalCache(REDIS_URL, [prefix], seconds=3600, max_entries=100)
        for name, module in implementations().items()
    }
    samples: dict[str, list[float]] = {name: [] for name in layers}
    loads = {name: [0] for name in layers}
    for round_number in range(ROUNDS):
        order = list(layers) if round_number % 2 == 0 else list(reversed(layers))
        for name in order:
            samples[name].append(ns_per_hit(layers[name], prefix + "product:1", loads[name]))
    old, new = (statistics.median(samples[name]) for name in ("old", "new"))
    ratio = statistics.median(n / o for n, o in zip(samples["new"], samples["old"], strict=True))
    misses = sum(loads[name][0] - 1 for name in layers)  # the first load warms the key
    print(f"{mode:<9}{old:>12.0f}{new:>12.0f}{ratio:>10.2f}{misses:>9}", flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2])
        return
    print(f"ns per get_or_load hit on a warm key, {HITS} hits x {ROUNDS} rounds, medians", flush=True)
    print(f"{'mode':<9}{'old':>12}{'new':>12}{'new/old':>10}{'misses':>9}", flush=True)
    script = str(Path(__file__).resolve())
    subprocess.run([sys.executable, script, "--measure", "threads"], check=True)
    subprocess.run([sys.executable, "-m", "gevent.monkey", script, "--measure", "gevent"], check=True)


if __name__ == "__main__":
    main()
