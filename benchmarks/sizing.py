"""gunicorn workers x database pool size, measured on the database-bound read path.

For each combination of gevent workers (BENCH_WORKER_COUNTS, default "1 2 4") and SQLAlchemy
pool size per worker (BENCH_POOL_SIZES, default "2 5 10 20", no overflow), one gunicorn runs
with the cache off (CACHE_TYPE=NullCache), so every GET /api/products/<id>/ reads PostgreSQL;
wrk drives it with BENCH_CONNECTIONS (64) connections for BENCH_SECONDS, BENCH_ROUNDS times.
Cached reads are measured once per worker count, at the default pool, as the reference. The
table gives medians, and each row's ratio to the best row.

    .venv/bin/python benchmarks/sizing.py
    BENCH_WORKER_COUNTS="2 4" BENCH_POOL_SIZES="5 10" BENCH_ROUNDS=3 .venv/bin/python benchmarks/sizing.py

Uses the database of cache_vs_db.py (BENCH_DATABASE_URL, ecommerce_bench by default), seeded the
same way.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
from cache_vs_db import (  # noqa: E402
    DATABASE_URL,
    HOT_SET,
    LUA_RANDOM_PRODUCT,
    REDIS_URL,
    ensure_wrk,
    free_port,
    prepare_database,
    run_wrk,
    start_instance,
    stop,
    warm,
)

WORKER_COUNTS = os.environ.get("BENCH_WORKER_COUNTS", "1 2 4").split()
POOL_SIZES = os.environ.get("BENCH_POOL_SIZES", "2 5 10 20").split()
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 2))
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "64")


def measure(wrk: str, env: dict[str, str], workers: str, label: str) -> dict[str, float]:
    port = free_port()
    process = start_instance(f"sizing-{label}", port, env, workers=workers)
    try:
        warm(port, HOT_SET)
        samples = [
            run_wrk(wrk, f"http://127.0.0.1:{port}/", LUA_RANDOM_PRODUCT % HOT_SET) for _ in range(ROUNDS)
        ]
    finally:
        stop(process)
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def main() -> None:
    cache_vs_db.CONNECTIONS = int(CONNECTIONS)
    wrk = ensure_wrk()
    base = cache_vs_db.app_env(DATABASE_URL, REDIS_URL)
    prepare_database(base)
    rows = []
    for workers in WORKER_COUNTS:
        for pool in POOL_SIZES:
            env = {**base, "CACHE_TYPE": "NullCache", "DB_POOL_SIZE": pool, "DB_MAX_OVERFLOW": "0"}
            rows.append((workers, f"pool {pool}", measure(wrk, env, workers, f"w{workers}-p{pool}")))
            print(f"workers {workers}, pool {pool}: done", file=sys.stderr)
        rows.append((workers, "cached (default pool)", measure(wrk, base, workers, f"w{workers}-cached")))
    best = max(m["rps"] for _, label, m in rows if label.startswith("pool"))
    print(f"\nGET /api/products/<id>/ (uncached unless marked), wrk -c{CONNECTIONS}, medians of {ROUNDS}\n")
    header = f"{'workers':>7} {'pool/worker':16} {'req/s':>8} {'x best':>7} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'non-2xx':>8}")
    for workers, label, m in rows:
        print(
            f"{workers:>7} {label:16} {m['rps']:8.0f} {m['rps'] / best:7.2f} {m['p50']:8.2f} "
            f"{m['p99']:8.2f} {m['errors']:8.0f}"
        )


if __name__ == "__main__":
    main()
