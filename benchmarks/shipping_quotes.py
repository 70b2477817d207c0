"""Shipping quotes on random carrier networks of 100, 1,000 and 10,000 legs: what the quote table
costs to build, against answering each quote the naive way, and what a quote costs once cached.

Each network is strongly connected (a ring through every zone, then random legs), has about one
zone per 8 legs, BENCH_WAREHOUSES warehouses, parallel legs on some lanes, and rebates (negative
legs) but no cycle of negative cost: every zone has a random potential and a leg a -> b costs
potential(b) - potential(a) plus a slack >= 0, so every cycle costs the sum of its slacks.

Measured per size, medians over BENCH_ROUNDS rounds, all in this one process:

- table: ``routing.quote_table``, the whole table (economy and express for every zone), one pass
  per method from all warehouses at once; the lane graph is built inside it;
- naive: one quote answered without the table, as a request would without it: the lane graph
  built, then for each warehouse a Bellman-Ford pass (economy) and a Dijkstra pass (express)
  over the whole graph, the best warehouse kept (checked against the table's answer);
- the ratio naive / table: from how many quotes on, building the whole table is cheaper;
- cached: ``services.quote`` on a warm cache, through the app (SQLite for the network, the
  Redis of BENCH_REDIS_URL for the cache), with the per-worker copy on, and with it off (a Redis
  GET and the unpickling of the whole table per quote); and the ratio naive / cached;
- miss: ``services.quote`` just after a purge: the network read, the table built and stored;
- check: ``routing.closed_cycle`` for one new random leg (the negative-cycle check of a POST).

    .venv/bin/python benchmarks/shipping_quotes.py
    BENCH_ROUNDS=9 BENCH_SIZES=100,1000 .venv/bin/python benchmarks/shipping_quotes.py
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ecommerce.shipping.routing import Leg, Zone, closed_cycle, lane_graph, quote_table  # noqa: E402

SIZES = [int(size) for size in os.environ.get("BENCH_SIZES", "100,1000,10000").split(",")]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
WAREHOUSES = int(os.environ.get("BENCH_WAREHOUSES", 4))
LOOKUPS = int(os.environ.get("BENCH_LOOKUPS", 2000))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
SEED = 20261205
T = TypeVar("T")


def network(leg_count: int, rng: random.Random) -> tuple[list[Zone], list[Leg]]:
    zone_count = max(WAREHOUSES + 2, round(leg_count / 8))
    codes = [f"Z{index}" for index in range(zone_count)]
    warehouses = set(rng.sample(codes, WAREHOUSES))
    potential = {code: rng.randint(0, 5000) for code in codes}

    def leg(from_zone: str, to_zone: str) -> Leg:
        slack = rng.choice([0, rng.randint(0, 500), rng.randint(0, 3000)])
        return Leg(from_zone, to_zone, potential[to_zone] - potential[from_zone] + slack, rng.randint(1, 7))

    ring = rng.sample(codes, len(codes))
    legs = [leg(a, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    while len(legs) < leg_count:
        if rng.random() < 0.05:  # a second carrier on a lane that has one
            existing = rng.choice(legs)
            legs.append(leg(existing.from_zone, existing.to_zone))
        else:
            legs.append(leg(*rng.sample(codes, 2)))
    return [Zone(code, code in warehouses) for code in codes], legs


def naive_quote(zones: list[Zone], legs: list[Leg], destination: str) -> tuple[tuple[int, int], ...]:
    """The economy and express (cents, days) to ``destination``: the lane graph, then a Bellman-Ford
    and a Dijkstra pass over the whole graph from each warehouse, the best warehouse kept."""
    graph = lane_graph((zone.code for zone in zones), legs)
    economy, express = [], []
    for zone in zones:
        if zone.is_warehouse:
            distances, paths = nx.single_source_bellman_ford(graph, zone.code, weight="economy_weight")
            economy.append((distances[destination], paths[destination]))
            distances, paths = nx.single_source_dijkstra(graph, zone.code, weight="express_weight")
            express.append((distances[destination], paths[destination]))
    best = (min(economy, key=lambda found: found[0])[1], min(express, key=lambda found: found[0])[1])
    return _total(graph, best[0], "economy"), _total(graph, best[1], "express")


def _total(graph: nx.DiGraph, path: list[str], method: str) -> tuple[int, int]:
    chosen = [graph.edges[a, b][method] for a, b in pairwise(path)]
    return sum(leg.cents for leg in chosen), sum(leg.days for leg in chosen)


def timed(call: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


class CachedQuotes:
    """The network in a SQLite file, and two apps on it sharing one Redis cache: one with the
    per-worker copy, one without."""

    def __init__(self, directory: str, zones: list[Zone], legs: list[Leg]) -> None:
        from ecommerce import create_app
        from ecommerce.config import Config

        settings = {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory}/shipping.db",
            "REDIS_URL": REDIS_URL,
            "CACHE_KEY_PREFIX": f"bench-shipping-{uuid.uuid4().hex[:8]}:",
            "RATELIMIT_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            "LOG_JSON": False,
        }
        self.local = create_app(Config, **settings, LOCAL_CACHE_SECONDS=3600)
        self.redis_only = create_app(Config, **settings, LOCAL_CACHE_SECONDS=0)
        with self.local.app_context():
            self._load(zones, legs)

    @staticmethod
    def _load(zones: list[Zone], legs: list[Leg]) -> None:
        from sqlalchemy import insert, select

        from ecommerce.extensions import db
        from ecommerce.shipping.models import ShippingLeg, ShippingZone
        from ecommerce.shipping.services import money

        db.create_all()
        rows = [{"code": zone.code, "name": zone.code, "is_warehouse": zone.is_warehouse} for zone in zones]
        db.session.execute(insert(ShippingZone), rows)
        ids = {
            code: zone_id for code, zone_id in db.session.execute(select(ShippingZone.code, ShippingZone.id))
        }
        db.session.execute(
            insert(ShippingLeg),
            [
                {
                    "from_zone_id": ids[leg.from_zone],
                    "to_zone_id": ids[leg.to_zone],
                    "cost": money(leg.cents),
                    "days": leg.days,
                }
                for leg in legs
            ],
        )
        db.session.commit()

    def lookup(self, app, codes: list[str]) -> float:
        """Seconds per ``services.quote`` on a warm cache (median of the rounds)."""
        from ecommerce.shipping import services

        with app.app_context():
            services.quote(codes[0])  # warm
            samples = []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                for index in range(LOOKUPS):
                    services.quote(codes[index % len(codes)])
                samples.append((time.perf_counter() - start) / LOOKUPS)
        return statistics.median(samples)

    def miss(self, code: str) -> float:
        """Seconds for the first quote after a purge (median of the rounds)."""
        from ecommerce.core.cache.purge import invalidate_shipping_network, purge_committed
        from ecommerce.extensions import db
        from ecommerce.shipping import services

        samples = []
        with self.redis_only.app_context():
            for _ in range(ROUNDS):
                invalidate_shipping_network(db.session)
                purge_committed(db.session)
                samples.append(timed(lambda: services.quote(code))[0])
        return statistics.median(samples)

    def close(self) -> None:
        from ecommerce.extensions import db

        for app in (self.local, self.redis_only):
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            if "local_cache" in app.extensions:
                app.extensions["local_cache"].close()
            app.extensions["events"].stop()


def measure(leg_count: int) -> None:
    rng = random.Random(SEED + leg_count)
    zones, legs = network(leg_count, rng)
    codes = [zone.code for zone in zones]
    inland = [zone.code for zone in zones if not zone.is_warehouse]

    table_samples, naive_samples, check_samples = [], [], []
    for _ in range(ROUNDS):
        table_samples.append(timed(lambda: quote_table(zones, legs))[0])
        destination = rng.choice(inland)
        elapsed, answer = timed(lambda d=destination: naive_quote(zones, legs, d))
        naive_samples.append(elapsed)
        row = quote_table(zones, legs)[destination]
        expected = tuple((row[method]["cents"], row[method]["days"]) for method in ("economy", "express"))
        assert answer == expected, (destination, answer, expected)
        a, b = rng.sample(codes, 2)
        new = Leg(a, b, rng.randint(-3000, 3000), rng.randint(1, 7))
        check_samples.append(timed(lambda n=new: closed_cycle(codes, legs, n))[0])

    with tempfile.TemporaryDirectory() as directory:
        cached = CachedQuotes(directory, zones, legs)
        try:
            local = cached.lookup(cached.local, inland)
            redis_hit = cached.lookup(cached.redis_only, inland)
            miss = cached.miss(inland[0])
        finally:
            cached.close()

    table, naive, check = (statistics.median(s) for s in (table_samples, naive_samples, check_samples))
    negative = sum(1 for leg in legs if leg.cents < 0)
    print(
        f"\n{len(legs):,} legs, {len(zones):,} zones, {WAREHOUSES} warehouses, "
        f"{negative:,} rebate legs; medians of {ROUNDS} rounds",
        flush=True,
    )
    rows = [
        ("table: every zone, both methods (2 passes in all)", f"{table * 1e3:10.2f} ms"),
        (f"naive: one quote, 2 passes x {WAREHOUSES} warehouses", f"{naive * 1e3:10.2f} ms"),
        ("ratio naive / table", f"{naive / table:10.2f}"),
        ("cached quote, per-worker copy", f"{local * 1e6:10.1f} us"),
        ("cached quote, Redis GET + unpickle of the table", f"{redis_hit * 1e6:10.1f} us"),
        ("ratio naive / cached (per-worker copy)", f"{naive / local:10.0f}"),
        ("first quote after a purge (read, build, store)", f"{miss * 1e3:10.2f} ms"),
        ("negative-cycle check of one new leg", f"{check * 1e3:10.2f} ms"),
    ]
    for label, value in rows:
        print(f"  {label:<50}{value}", flush=True)


def main() -> None:
    print(
        "Shipping quotes: the whole table (one pass per method, all warehouses at once) against one "
        "quote answered per request with a pass per warehouse, the cached look-up, and the "
        "negative-cycle check of a new leg.",
        flush=True,
    )
    print(f"Python {platform.python_version()}, networkx {nx.__version__}, {os.cpu_count()} CPUs", flush=True)
    for size in SIZES:
        measure(size)


if __name__ == "__main__":
    main()
