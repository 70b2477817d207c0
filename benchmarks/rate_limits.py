"""What a default rate limit costs the cached product detail: ours against Flask-Limiter's.

One gunicorn instance per variant runs at once on 127.0.0.1, all on the same PostgreSQL catalog
and Redis; wrk measures them in alternating rounds (medians; the ratios are what to quote):

- ``off``: no default limit (RATELIMIT_DEFAULT unset), the baseline;
- ``flask-limiter <strategy>``: the default limit as Flask-Limiter counted it (one instance per
  strategy in BENCH_STRATEGIES: moving window, sliding-window counter, fixed window), served
  from a worktree of BENCH_BEFORE (the commit before ecommerce/core/ratelimit.py), made and
  removed here;
- ``batched (0.1 s)``: ecommerce/core/ratelimit.py as shipped, counts shared every 0.1 s;
- ``exact (sync 0)``: the same with RATELIMIT_SYNC_SECONDS=0, one round trip per request.

Every limited instance has RATELIMIT_DEFAULT=BENCH_LIMIT (600/minute). The clients are many, as a
shop's are: each request carries an X-Forwarded-For address drawn from BENCH_CLIENTS (20,000)
addresses, which the instances trust (TRUSTED_PROXY_HOPS=1), so every client stays under its
limit and each request pays for counting, not for a 429. Before printing, the script checks that
each limited instance answers with X-RateLimit-Limit and the baseline does not. wrk's own CPU
share of the machine is printed beside the figures: on two cores the client competes with the
server.

    .venv/bin/python benchmarks/rate_limits.py
    BENCH_ROUNDS=3 BENCH_STRATEGIES=moving-window .venv/bin/python benchmarks/rate_limits.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
from cache_vs_db import app_env, ensure_wrk, free_port, prepare_database, start_instance, stop  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
LIMIT = os.environ.get("BENCH_LIMIT", "600/minute")
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 20_000))
STRATEGIES = os.environ.get("BENCH_STRATEGIES", "moving-window sliding-window-counter fixed-window").split()
BEFORE = os.environ.get("BENCH_BEFORE", "f64389e")
HOT_SET = cache_vs_db.HOT_SET

# A random product of the hot set, from a random one of CLIENTS client addresses.
LUA_CLIENTS = """
math.randomseed(os.time())
request = function()
  local client = math.random(1, %(clients)d)
  wrk.headers["X-Forwarded-For"] = "10." .. math.floor(client / 65536) .. "."
    .. math.floor(client / 256) %% 256 .. "." .. client %% 256
  return wrk.format("GET", "/api/products/" .. math.random(1, %(hot)d) .. "/")
end
"""


def run_wrk(wrk: str, port: int) -> dict[str, float]:
    """cache_vs_db.run_wrk, plus the share of the machine's CPU that wrk itself used."""
    before = os.times()
    began = time.monotonic()
    result = cache_vs_db.run_wrk(
        wrk, f"http://127.0.0.1:{port}/", LUA_CLIENTS % {"clients": CLIENTS, "hot": HOT_SET}
    )
    after = os.times()
    wall = time.monotonic() - began
    client_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    result["client_cpu"] = client_cpu / (wall * os.cpu_count())
    return result


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=cache_vs_db.ROOT, check=True, capture_output=True)


def get(port: int, path: str, client: int) -> urllib.request.Request:
    """GET path as client number ``client`` (its X-Forwarded-For address)."""
    address = f"10.{client // 65536}.{client // 256 % 256}.{client % 256}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-Forwarded-For": address})
    with urllib.request.urlopen(request) as response:
        response.read()
        return response


def warm(port: int) -> None:
    """Every product of the hot set into the cache, each read by a client of its own."""
    for product_id in range(1, HOT_SET + 1):
        get(port, f"/api/products/{product_id}/", CLIENTS + product_id)


def limit_header(port: int) -> str | None:
    return get(port, "/api/products/1/", 2 * CLIENTS).headers.get("X-RateLimit-Limit")


def main() -> None:
    wrk = ensure_wrk()
    base_env = app_env(cache_vs_db.DATABASE_URL, cache_vs_db.REDIS_URL, TRUSTED_PROXY_HOPS="1")
    prepare_database(base_env)
    before = Path(tempfile.mkdtemp(prefix="bench-rl-before-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(before), BEFORE], cwd=cache_vs_db.ROOT, check=True
    )
    (before / ".venv").symlink_to(cache_vs_db.ROOT / ".venv")
    limited = {"RATELIMIT_DEFAULT": LIMIT}
    variants: dict[str, tuple[Path, dict[str, str]]] = {"off": (cache_vs_db.ROOT, {})}
    for strategy in STRATEGIES:
        variants[f"flask-limiter {strategy}"] = (
            before,
            {**limited, "RATELIMIT_STRATEGY": strategy, "RATELIMIT_KEY_PREFIX": f"bench-rl-{strategy}"},
        )
    variants["batched (0.1 s)"] = (cache_vs_db.ROOT, {**limited, "RATELIMIT_KEY_PREFIX": "bench-rl-batched"})
    variants["exact (sync 0)"] = (
        cache_vs_db.ROOT,
        {**limited, "RATELIMIT_SYNC_SECONDS": "0", "RATELIMIT_KEY_PREFIX": "bench-rl-exact"},
    )
    instances, ports = {}, {}
    try:
        for number, (name, (tree, settings)) in enumerate(variants.items()):
            ports[name] = free_port()
            env = {**base_env, "RATELIMIT_ENABLED": "true", **settings}
            instances[name] = start_instance(f"rl-{number}", ports[name], env, cwd=tree)
            warm(ports[name])
        headers = {name: limit_header(port) for name, port in ports.items()}
        if headers["off"] is not None or not all(headers[name] for name in variants if name != "off"):
            raise SystemExit(f"the instances did not run as labelled: X-RateLimit-Limit {headers}")
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for round_number in range(1, ROUNDS + 1):
            order = list(variants) if round_number % 2 else list(reversed(variants))
            for name in order:
                samples[name].append(run_wrk(wrk, ports[name]))
            print(f"round {round_number}/{ROUNDS} done", file=sys.stderr)
    finally:
        for process in instances.values():
            stop(process)
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(before)], cwd=cache_vs_db.ROOT, check=False
        )

    def median(name: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[name])

    baseline = median("off", "rps")
    print(
        f"\ncached product detail, {cache_vs_db.PRODUCTS} products, hot set {HOT_SET}, "
        f"{cache_vs_db.WORKERS} gevent workers per instance, wrk -t2 -c{cache_vs_db.CONNECTIONS}, "
        f"{CLIENTS} client addresses, limit {LIMIT} (Flask-Limiter at {BEFORE}), "
        f"{ROUNDS} rounds x {cache_vs_db.SECONDS}s, medians\n"
    )
    columns = f"{'req/s':>9} {'x off':>7} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'wrk CPU':>8}"
    print(f"{'default limit':38} {columns}")
    for name in variants:
        rps = median(name, "rps")
        print(
            f"{name:38} {rps:9.0f} {rps / baseline:7.2f} {median(name, 'p50'):8.2f} "
            f"{median(name, 'p99'):8.2f} {median(name, 'errors'):8.0f} {median(name, 'client_cpu'):8.0%}"
        )


if __name__ == "__main__":
    main()
