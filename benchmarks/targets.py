"""The performance targets, through nginx, as ratios to GET /healthz on the same stack in one run.

Brings up `scripts/stack.sh` on ports and a database of its own (nginx least_conn over two
gunicorn gevent instances, PostgreSQL, Redis), with a catalog of BENCH_PRODUCTS products, and
measures with wrk (BENCH_CONNECTIONS connections, BENCH_ROUNDS alternating rounds of
BENCH_SECONDS each; medians):

- GET /healthz, the floor: a request that does no work;
- GET /api/products/<id>/ cached: random products of a warm hot set (BENCH_HOT_SET);
- GET /api/products/?page&sort cached: 20 pages x 5 sort orders, warm;
- GET /api/products/<id>/ uncached: every request a product nobody has read in this run (each
  round walks a fresh range of ids), so each is a cache miss, read from PostgreSQL and stored.

Beside each figure it prints where the machine's CPU went, per request and by kind of process
(benchmarks/cpu_accounting.py: the app's workers, nginx, PostgreSQL, Redis, wrk itself, the rest,
and the machine's idle share), which is what a ratio on two saturated cores comes down to.

Before the measured rounds, the cached scenarios run once for BENCH_WARM_SECONDS (5; 0: not at
all), unmeasured, so that each worker holds the hot entries in its own copy of the
cache, as under steady traffic; each figure is printed with the share of the per-process cache's
look-ups that it answered in each run, so a cold round shows.

Before printing, the script reads both instances' /metrics and refuses to report unless the
uncached scenario really missed the cache (misses >= 95% of its requests) and the cached ones
really hit it (the list pages in the measured rounds; the cached detail misses the shared cache
on at most 1% of its requests).

BENCH_VARIANTS runs the whole measurement once per variant, each on a freshly started stack:
``local`` is the shipped configuration, ``redis-only`` sets LOCAL_CACHE_SECONDS=0 (every
cached read goes to Redis: the configuration before the per-process layer), and ``before``
runs the stack from another checkout (BENCH_BEFORE_TREE, e.g. a ``git worktree`` of an
earlier commit with a ``.venv`` link to this one's), for before/after figures in one run. Any
variant may add settings of its own after a colon: ``pool10+10:DB_POOL_SIZE=10,DB_MAX_OVERFLOW=10``
runs the shipped code with those two settings (``before:WEB_CONCURRENCY=1`` the old code).
A variant named more than once is measured once per mention, each on its own stack, and printed
as ``local``, ``local #2``, ...: ``BENCH_VARIANTS="w2:WEB_CONCURRENCY=2 local w2:WEB_CONCURRENCY=2
local"`` alternates two settings. The stack's workers per instance are its own script's choice:
this tree's stack.sh gives each instance cores / instances, an older tree's may give each one a
worker per core (2 each on 2 cores, before 8dae7f6); on 2 cores ``before:WEB_CONCURRENCY=1``
compares the code alone.

    .venv/bin/python benchmarks/targets.py
    BENCH_VARIANTS="redis-only local" BENCH_ROUNDS=5 .venv/bin/python benchmarks/targets.py
    git worktree add /tmp/before 992090d && ln -s "$PWD/.venv" /tmp/before/.venv
    BENCH_BEFORE_TREE=/tmp/before BENCH_VARIANTS="before local" .venv/bin/python benchmarks/targets.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
import cpu_accounting  # noqa: E402
from cache_vs_db import LUA_RANDOM_LIST, LUA_RANDOM_PRODUCT, ROOT, ensure_wrk, run_wrk  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 64))
HOT_SET = int(os.environ.get("BENCH_HOT_SET", 1000))
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", 100_000))
VARIANTS = os.environ.get("BENCH_VARIANTS", "local").split()
WARM_SECONDS = int(os.environ.get("BENCH_WARM_SECONDS", 5))
LOCAL_METRIC = "ecommerce_local_cache_requests_total"
PORT = os.environ.get("BENCH_STACK_PORT", "18580")
APP_PORTS = os.environ.get("BENCH_STACK_APP_PORTS", "18501 18502")
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_targets"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
VARIANT_ENV = {"local": {}, "redis-only": {"LOCAL_CACHE_SECONDS": "0"}, "before": {}}


def variant_env(variant: str) -> dict[str, str]:
    """The settings of ``variant``: its name's own, then any ``:NAME=value,...`` after it."""
    name, _, extra = variant.partition(":")
    settings = dict(VARIANT_ENV.get(name, {}))
    for pair in filter(None, extra.split(",")):
        key, _, value = pair.partition("=")
        settings[key] = value
    return settings


# Each wrk thread walks its own stride of ids upwards from START: no id is asked for twice.
LUA_FRESH_PRODUCTS = """
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end
local n = 0
function request()
  local id = %d + offset + n * %d
  n = n + 1
  return wrk.format("GET", "/api/products/" .. id .. "/")
end
"""
LIST_PAGES = [
    (page, sort) for page in range(1, 21) for sort in ("price", "-price", "name", "-created_at", "-rating")
]


def stack(command: str, env: dict[str, str], root: Path = ROOT) -> None:
    subprocess.run(["bash", str(root / "scripts" / "stack.sh"), command], check=True, env=env, cwd=root)


def cache_counts(entity: str | None, metric: str = "ecommerce_cache_requests_total") -> dict[str, float]:
    """Cache look-ups of ``entity`` (any, if None) counted by both instances, by result."""
    counts: dict[str, float] = {}
    for port in APP_PORTS.split():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        for line in text.splitlines():
            if line.startswith(metric + "{") and (entity is None or f'entity="{entity}"' in line):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                counts[result] = counts.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def local_hit_share(before: dict[str, float], after: dict[str, float]) -> float | None:
    """The share of the per-process cache's look-ups between two counts that it answered
    itself; None when there were none (``/healthz`` looks nothing up)."""
    looked_up = sum(after.values()) - sum(before.values())
    if looked_up <= 0:
        return None
    return (after.get("hit", 0.0) - before.get("hit", 0.0)) / looked_up


def measure(variant: str, wrk: str) -> dict[str, list[dict[str, float]]]:
    stack_dir = tempfile.mkdtemp(prefix="bench-targets-")
    env = cache_vs_db.stack_env(
        stack_dir, (PORT, APP_PORTS, 18591, 18590), PRODUCTS, DATABASE_URL, REDIS_URL, **variant_env(variant)
    )
    root = Path(os.environ["BENCH_BEFORE_TREE"]) if variant.partition(":")[0] == "before" else ROOT
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    stack("up", env, root)
    base = f"http://127.0.0.1:{PORT}"
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        for product_id in range(1, HOT_SET + 1):
            urllib.request.urlopen(f"{base}/api/products/{product_id}/").read()
        for page, sort in LIST_PAGES:
            urllib.request.urlopen(f"{base}/api/products/?page={page}&sort={sort}").read()
        fresh_per_round = (PRODUCTS - HOT_SET) // ROUNDS
        if WARM_SECONDS:
            # Each request above reached one of the workers: under steady traffic every worker
            # holds the hot entries in its own copy, so the cached scenarios run once, unmeasured,
            # until they do (the per-run hit share is printed with the figures).
            cache_vs_db.CONNECTIONS, cache_vs_db.SECONDS = CONNECTIONS, WARM_SECONDS
            run_wrk(wrk, f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET)
            run_wrk(wrk, f"{base}/", LUA_RANDOM_LIST)
        scenarios = [
            ("GET /healthz", lambda _round: (f"{base}/healthz", None)),
            ("product detail, cached", lambda _round: (f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET)),
            ("product list page, cached", lambda _round: (f"{base}/", LUA_RANDOM_LIST)),
            (
                "product detail, uncached",
                lambda r: (f"{base}/", LUA_FRESH_PRODUCTS % (HOT_SET + 1 + r * fresh_per_round, 2)),
            ),
        ]
        cache_vs_db.CONNECTIONS, cache_vs_db.SECONDS = CONNECTIONS, SECONDS
        misses_before = cache_counts("product").get("miss", 0.0)
        list_hits_before = cache_counts("product_list").get("hit", 0.0)
        cached_misses = cached_requests = 0.0
        uncached_requests = 0.0
        for round_number in range(ROUNDS):
            for name, target in scenarios:
                url, script = target(round_number)
                local_before = cache_counts(None, LOCAL_METRIC)
                product_misses = cache_counts("product").get("miss", 0.0)
                before = cpu_accounting.snapshot()
                children = cpu_accounting.children_seconds()
                result = run_wrk(wrk, url, script)
                result["cpu"] = cpu_accounting.per_request(
                    before,
                    cpu_accounting.snapshot(),
                    result["rps"] * SECONDS,
                    wrk_seconds=cpu_accounting.children_seconds() - children,
                )
                result["local_hits"] = local_hit_share(local_before, cache_counts(None, LOCAL_METRIC))
                samples.setdefault(name, []).append(result)
                if name == "product detail, uncached":
                    uncached_requests += result["rps"] * SECONDS
                if name == "product detail, cached":
                    cached_requests += result["rps"] * SECONDS
                    cached_misses += cache_counts("product").get("miss", 0.0) - product_misses
            print(f"{variant}: round {round_number + 1}/{ROUNDS} done", file=sys.stderr)
        misses = cache_counts("product").get("miss", 0.0) - misses_before
        if uncached_requests and misses < 0.95 * uncached_requests:
            raise SystemExit(f"uncached scenario: {misses:.0f} misses for ~{uncached_requests:.0f} requests")
        if cache_counts("product_list").get("hit", 0.0) - list_hits_before == 0:
            raise SystemExit("the cached list scenario never hit the cache")
        if cached_misses > 0.01 * cached_requests:
            raise SystemExit(
                f"cached detail scenario: {cached_misses:.0f} misses for ~{cached_requests:.0f} requests"
            )
        print(
            f"{variant}: {misses:.0f} misses for ~{uncached_requests:.0f} uncached requests", file=sys.stderr
        )
        local = cache_counts(None, "ecommerce_local_cache_requests_total")
        if local:
            looked_up = sum(local.values())
            print(
                f"{variant}: per-process cache {local.get('hit', 0) / looked_up:.0%} hits of "
                f"{looked_up:.0f} look-ups (every scenario, warm-up included)",
                file=sys.stderr,
            )
    finally:
        stack("down", env, root)
    return samples


def main() -> None:
    wrk = ensure_wrk()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for index, variant in enumerate(VARIANTS):  # named twice, measured twice: "local", "local #2"
        earlier = VARIANTS[:index].count(variant)
        results[f"{variant} #{earlier + 1}" if earlier else variant] = measure(variant, wrk)
    report = {}
    print(
        f"\nthrough nginx (least_conn, 2 gunicorn instances), wrk -t2 -c{CONNECTIONS}, "
        f"{ROUNDS} rounds x {SECONDS}s, medians"
    )
    for variant, samples in results.items():

        def median(name: str, key: str, samples=samples) -> float:
            return statistics.median(sample[key] for sample in samples[name])

        floor = median("GET /healthz", "rps")
        print(f"\nvariant: {variant}")
        print(
            f"{'scenario':28} {'req/s':>8} {'x healthz':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
            f"{'local hits (per run)':>24}"
        )
        for name in samples:
            rps = median(name, "rps")
            shares = [sample["local_hits"] for sample in samples[name]]
            row = {
                "rps": round(rps),
                "ratio": round(rps / floor, 2),
                "p50_ms": median(name, "p50"),
                "p99_ms": median(name, "p99"),
                "non_2xx": median(name, "errors"),
                "local_hit_share_per_run": [None if share is None else round(share, 3) for share in shares],
            }
            report.setdefault(variant, {})[name] = row
            hit_column = " ".join("-" if share is None else f"{share:.0%}" for share in shares)
            print(
                f"{name:28} {rps:8.0f} {row['ratio']:10.2f} {row['p50_ms']:8.2f} "
                f"{row['p99_ms']:8.2f} {row['non_2xx']:8.0f} {hit_column:>24}"
            )
    print(
        "\nCPU per request, microseconds (medians; /proc, every process of the machine by kind; "
        "idle: the machine's unused share)"
    )
    kinds = (*cpu_accounting.KINDS, "busy")
    for variant, samples in results.items():
        print(f"\nvariant: {variant}")
        print(f"{'scenario':28} " + " ".join(f"{kind:>8}" for kind in kinds) + f" {'idle':>6}")
        for name in samples:
            cpu = {
                kind: statistics.median(sample["cpu"][kind] for sample in samples[name])
                for kind in (*kinds, "idle_share")
            }
            report[variant][name]["cpu_us_per_request"] = {kind: round(cpu[kind], 1) for kind in kinds}
            report[variant][name]["idle_share"] = round(cpu["idle_share"], 3)
            columns = " ".join(f"{cpu[kind]:8.1f}" for kind in kinds)
            print(f"{name:28} {columns} {cpu['idle_share']:6.1%}")
    out = ROOT / "run" / "bench-targets.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
