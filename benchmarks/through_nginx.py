"""GET /healthz vs a cached GET /api/products/<id>/, side by side, through nginx (make stack).

Brings the stack up with scripts/stack.sh on its own ports and database (nginx least_conn over
two gunicorn gevent instances, PostgreSQL, Redis), warms the cache on BENCH_HOT_SET products,
then runs wrk through nginx in alternating rounds on both endpoints; medians, and the ratio of
the cached product read to /healthz. The stack is stopped at the end.

    .venv/bin/python benchmarks/through_nginx.py
    BENCH_ROUNDS=5 BENCH_CONNECTIONS=64 .venv/bin/python benchmarks/through_nginx.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
from cache_vs_db import LUA_RANDOM_PRODUCT, ROOT, ensure_wrk, run_wrk  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
HOT_SET = int(os.environ.get("BENCH_HOT_SET", 1000))
PORT = os.environ.get("BENCH_STACK_PORT", "18480")
APP_PORTS = os.environ.get("BENCH_STACK_APP_PORTS", "18401 18402")
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_nginx"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")


def stack(command: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), command], check=True, env=env, cwd=ROOT)


def main() -> None:
    cache_vs_db.CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 64))
    wrk = ensure_wrk()
    stack_dir = tempfile.mkdtemp(prefix="bench-nginx-")
    env = {
        **os.environ,
        "STACK_PORT": PORT,
        "STACK_APP_PORTS": APP_PORTS,
        "STACK_WORKER_METRICS_PORT": "18491",
        "STACK_PROMETHEUS_PORT": "18490",
        "STACK_DIR": stack_dir,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "STACK_SEED_PRODUCTS": str(max(HOT_SET, 1000)),
        "RATELIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    stack("up", env)
    base = f"http://127.0.0.1:{PORT}"
    try:
        for product_id in range(1, HOT_SET + 1):
            urllib.request.urlopen(f"{base}/api/products/{product_id}/").read()
        scenarios = [
            ("GET /healthz", f"{base}/healthz", None),
            ("GET /api/products/<id>/, cached", f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET),
        ]
        samples: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in scenarios}
        for round_number in range(1, ROUNDS + 1):
            for name, url, script in scenarios:
                samples[name].append(run_wrk(wrk, url, script))
            print(f"round {round_number}/{ROUNDS} done", file=sys.stderr)
    finally:
        stack("down", env)

    def median(name: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[name])

    floor = median("GET /healthz", "rps")
    print(
        f"\nthrough nginx (least_conn, 2 gunicorn instances), wrk -t2 -c{cache_vs_db.CONNECTIONS}, "
        f"{ROUNDS} rounds x {cache_vs_db.SECONDS}s, medians\n"
    )
    print(f"{'scenario':34} {'req/s':>8} {'x healthz':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, *_ in scenarios:
        rps = median(name, "rps")
        print(
            f"{name:34} {rps:8.0f} {rps / floor:10.2f} {median(name, 'p50'):8.2f} "
            f"{median(name, 'p99'):8.2f} {median(name, 'errors'):8.0f}"
        )


if __name__ == "__main__":
    main()
