"""Cached vs uncached product reads, side by side, through gunicorn + gevent.

Two instances of the app run on 127.0.0.1 against the same PostgreSQL and Redis: one with
the Redis cache (the normal configuration) and one with CACHE_TYPE=NullCache (every read goes
to the database). wrk measures them in alternating rounds, so machine noise hits both alike;
the figures are medians over the rounds, and the ratios are what to quote. GET /healthz on
the cached instance is the floor: a request that does no work at all.

    make bench-cache                       # or: .venv/bin/python benchmarks/cache_vs_db.py
    BENCH_ROUNDS=5 BENCH_SECONDS=8 BENCH_CONNECTIONS=64 make bench-cache

Needs wrk (apt-get install wrk; installed here when missing) and a PostgreSQL catalog: the
database of BENCH_DATABASE_URL (default ecommerce_bench on 127.0.0.1) is migrated and seeded
with BENCH_PRODUCTS products (default 100,000) first if it has fewer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", 100_000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 32))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
HOT_SET = int(os.environ.get("BENCH_HOT_SET", 1000))

LUA_RANDOM_PRODUCT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/products/" .. math.random(1, %d) .. "/")
end
"""
LUA_RANDOM_LIST = """
math.randomseed(os.time())
local sorts = {"price", "-price", "name", "-created_at", "-rating"}
request = function()
  local query = "?page=" .. math.random(1, 20) .. "&sort=" .. sorts[math.random(1, 5)]
  return wrk.format("GET", "/api/products/" .. query)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def app_env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a benchmark's app processes and ``flask`` commands: this shell's, with
    the benchmark's own database and Redis, no rate limits, warnings only, and ``settings``."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "FLASK_APP": "wsgi.py",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_ENABLED": "false",
        **settings,
    }


def stack_env(
    stack_dir: str,
    ports: tuple[str | int, str, str | int, str | int],
    products: int,
    database_url: str,
    redis_url: str,
    **settings: str,
) -> dict[str, str]:
    """``app_env`` for a ``scripts/stack.sh`` stack of a benchmark's own: its folder, its ports
    (nginx, the instances as "P1 P2", the worker's metrics, Prometheus) and a catalog of
    ``products``."""
    port, app_ports, worker_port, prometheus_port = ports
    return app_env(
        database_url,
        redis_url,
        STACK_DIR=stack_dir,
        STACK_PORT=str(port),
        STACK_APP_PORTS=app_ports,
        STACK_WORKER_METRICS_PORT=str(worker_port),
        STACK_PROMETHEUS_PORT=str(prometheus_port),
        STACK_SEED_PRODUCTS=str(products),
        **settings,
    )


def flask(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "flask"), *args], check=True, env=env, cwd=ROOT)


def prepare_database(env: dict[str, str], database_url: str | None = None, *seed_args: str) -> None:
    """Create the database if missing, migrate it, and seed it (``flask seed`` with ``seed_args``,
    by default BENCH_PRODUCTS products)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(database_url or DATABASE_URL)
    admin = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{url.database}"')
    admin.close()
    flask("db", "upgrade", env=env)
    flask("seed", *(seed_args or ("--products", str(PRODUCTS))), env=env)


def start_instance(
    name: str,
    port: int,
    env: dict[str, str],
    *,
    log_path: Path | None = None,
    workers: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:<port> in a process group of its own, once /readyz answers 200.

    ``cwd`` is the source tree it serves (default: this checkout)."""
    log_path = log_path or Path(tempfile.gettempdir()) / f"bench-{name}.log"
    log = open(log_path, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
        env={**env, "PORT": str(port), "WEB_CONCURRENCY": workers or WORKERS, "INSTANCE_NAME": name},
        cwd=cwd or ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{name} did not become ready; see {log_path}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL if it has not gone within 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def run_wrk(wrk: str, url: str, script: str | None) -> dict[str, float]:
    command = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        if script:
            lua.write(script)
            command[1:1] = ["-s", lua.name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    os.unlink(lua.name)
    return parse_wrk(output)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> dict[str, float]:
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for percentile in ("50", "99"):
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        result[f"p{percentile}"] = _ms(*match.groups())
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def warm(port: int, ids: int) -> None:
    for product_id in range(1, ids + 1):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/products/{product_id}/").read()


def cache_hits(port: int) -> float:
    """Cache hits the instance has counted (its /metrics), to prove which path was measured."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ecommerce_cache_requests_total{") and 'result="hit"' in line
    )


def main() -> None:
    wrk = ensure_wrk()
    base_env = app_env(DATABASE_URL, REDIS_URL)
    prepare_database(base_env)
    cached_port, uncached_port = free_port(), free_port()
    cached = start_instance("cached", cached_port, base_env)
    uncached = start_instance("uncached", uncached_port, {**base_env, "CACHE_TYPE": "NullCache"})
    try:
        warm(cached_port, HOT_SET)
        warm(uncached_port, HOT_SET)  # same rows in PostgreSQL's buffers for both
        scenarios = [
            ("GET /healthz (floor)", cached_port, "/healthz", None),
            ("product detail, cached", cached_port, "/", LUA_RANDOM_PRODUCT % HOT_SET),
            ("product detail, uncached", uncached_port, "/", LUA_RANDOM_PRODUCT % HOT_SET),
            ("product list page, cached", cached_port, "/", LUA_RANDOM_LIST),
            ("product list page, uncached", uncached_port, "/", LUA_RANDOM_LIST),
        ]
        samples: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in scenarios}
        for round_number in range(1, ROUNDS + 1):
            for name, port, path, script in scenarios:
                samples[name].append(run_wrk(wrk, f"http://127.0.0.1:{port}{path}", script))
            print(f"round {round_number}/{ROUNDS} done", file=sys.stderr)
        hits = {"cached": cache_hits(cached_port), "uncached": cache_hits(uncached_port)}
        if hits["cached"] == 0 or hits["uncached"] != 0:
            raise SystemExit(f"the instances did not run as labelled: cache hits {hits}")
    finally:
        stop(cached)
        stop(uncached)

    def median(name: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[name])

    floor = median("GET /healthz (floor)", "rps")
    print(
        f"\n{PRODUCTS} products, {WORKERS} gevent workers per instance, wrk -t2 -c{CONNECTIONS}, "
        f"{ROUNDS} rounds x {SECONDS}s, medians\n"
    )
    print(f"cache hits counted by /metrics (one worker's view): {hits}\n")
    print(f"{'scenario':32} {'req/s':>9} {'x healthz':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, *_ in scenarios:
        rps = median(name, "rps")
        print(
            f"{name:32} {rps:9.0f} {rps / floor:10.2f} {median(name, 'p50'):8.2f} "
            f"{median(name, 'p99'):8.2f} {median(name, 'errors'):8.0f}"
        )
    for kind in ("product detail", "product list page"):
        ratio = median(f"{kind}, cached", "rps") / median(f"{kind}, uncached", "rps")
        print(f"{kind}: cached / uncached throughput = {ratio:.2f}x")


if __name__ == "__main__":
    main()
