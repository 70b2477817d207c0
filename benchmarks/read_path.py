"""CPU per request of the hot reads inside one process: the app alone, without a server.

``benchmarks/targets.py`` measures the reads through the whole stack, where wrk, nginx, four
gunicorn workers, PostgreSQL and Redis share two cores and a figure moves by 20% between runs.
This script calls the app's WSGI callable directly, in one process, and reads the process's own
CPU clock (``time.process_time``) around each batch of requests, so what it prints is the
app's Python (and its drivers' client side) per request, without the network, the HTTP server or
the servers' CPU:

- ``GET /healthz``: the floor, the framework's fixed cost;
- a cached product detail, random ids among BENCH_HOT_SET warm ones (served from the process's
  own copy of the cache);
- a cached list page (20 pages x 5 sort orders, warm);
- an uncached product detail: ids nobody has read in this run, so each is a cache miss (two Redis
  round trips and one PostgreSQL round trip; the servers' CPU is not counted here).

Scenarios alternate in rounds of BENCH_REQUESTS requests (the uncached one: BENCH_MISSES);
figures are medians. Beside each it prints its ratio to ``/healthz`` (the floor's CPU over the
scenario's, the throughput ratio a CPU-bound process would have) and what it costs beyond the
floor. ``BENCH_PROFILE=<scenario number>`` runs that scenario once more under cProfile and prints
the functions that take the most time of their own (``BENCH_PROFILE_SORT=cumulative``: with
what they call). The process's CPU clock also counts the app's
background threads (the event hub, the cache's invalidation listener), which are idle here.

``BENCH_WITHOUT=<part>,<part>+<part>,...`` adds a cached-detail and a cached-list scenario per
item (``+`` joins parts), with those parts of the read switched off, or changed, for their
batches only (patched in this process, then restored; the parts are listed in
``read_parts.py``), to weigh what each costs.

Rate limiting is on, as the shop ships it (no default limit: Flask-Limiter holds only the auth
routes' limits, and no read is refused); ``BENCH_RATELIMIT_ENABLED=false`` switches it off, as
the stack benchmarks (targets.py) do. ``BENCH_GEVENT=1`` runs it as a gunicorn gevent worker
runs the app: the standard library monkey-patched by gevent, psycopg2 made cooperative by
psycogreen (the requests still run one at a time).

    .venv/bin/python benchmarks/read_path.py
    BENCH_APP_TREE=/tmp/before .venv/bin/python benchmarks/read_path.py   # another checkout's app

The catalog is the database of BENCH_DATABASE_URL (default: targets.py's), migrated and seeded
with BENCH_PRODUCTS products if it has fewer; Redis is BENCH_REDIS_URL's database, flushed first.
"""

from __future__ import annotations

import os

if os.environ.get("BENCH_GEVENT") == "1":  # the app as a gunicorn gevent worker runs it
    from gevent import monkey

    monkey.patch_all()

import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
from read_parts import check, without  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 7))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", 2000))
MISSES = int(os.environ.get("BENCH_MISSES", 500))
HOT_SET = int(os.environ.get("BENCH_HOT_SET", 1000))
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", 100_000))
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_targets"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
APP_TREE = Path(os.environ.get("BENCH_APP_TREE", cache_vs_db.ROOT))
PROFILE = os.environ.get("BENCH_PROFILE")
PROFILE_SORT = os.environ.get("BENCH_PROFILE_SORT", "tottime")  # or cumulative
PROFILE_LINES = int(os.environ.get("BENCH_PROFILE_LINES", 25))
RATELIMIT_ENABLED = os.environ.get("BENCH_RATELIMIT_ENABLED", "true")
SORTS = ("price", "-price", "name", "-created_at", "-rating")
WITHOUT = [item.split("+") for item in os.environ.get("BENCH_WITHOUT", "").split(",") if item]


def wsgi_environ(path: str, query: str = "") -> dict:
    """What nginx and gunicorn would hand the app for ``GET path?query``."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_X_REAL_IP": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


class Client:
    """Calls the WSGI app as a server would and reads the whole answer."""

    def __init__(self, app) -> None:
        self.app = app
        self.status = ""

    def _start_response(self, status, headers, exc_info=None):
        self.status = status
        return lambda data: None

    def get(self, environ: dict) -> None:
        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO()
        body = self.app(environ, self._start_response)
        try:
            for _chunk in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()
        if not self.status.startswith("200"):
            sys.exit(f"{environ['PATH_INFO']}?{environ['QUERY_STRING']} answered {self.status}")


def main() -> None:
    for parts in WITHOUT:
        check(parts)
    # Rate limiting as the shop ships it (on, no default limit: only the auth routes have limits,
    # so no read is refused), unlike the stack benchmarks, which switch it off.
    env = cache_vs_db.app_env(DATABASE_URL, REDIS_URL, RATELIMIT_ENABLED=RATELIMIT_ENABLED)
    cache_vs_db.prepare_database(env, DATABASE_URL)
    os.environ.update(env)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    sys.path.insert(0, str(APP_TREE))
    if os.environ.get("BENCH_GEVENT") == "1":
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()  # as gunicorn.conf.py does in each worker
    import ecommerce
    from ecommerce import create_app

    app = create_app()
    client = Client(app)
    rng = random.Random(7)
    detail = [wsgi_environ(f"/api/products/{i}/") for i in range(1, HOT_SET + 1)]
    pages = [wsgi_environ("/api/products/", f"page={p}&sort={s}") for p in range(1, 21) for s in SORTS]
    for environ in detail + pages:  # warm: Redis and this process's own copy
        client.get(environ)
    fresh = iter(range(HOT_SET + 1, PRODUCTS + 1))
    healthz = wsgi_environ("/healthz")
    scenarios = [
        ("GET /healthz", lambda: healthz, REQUESTS),
        ("product detail, cached", lambda: rng.choice(detail), REQUESTS),
        ("product list page, cached", lambda: rng.choice(pages), REQUESTS),
        ("product detail, uncached", lambda: wsgi_environ(f"/api/products/{next(fresh)}/"), MISSES),
    ]
    parts_of = {name: [] for name, _, _ in scenarios}
    for parts in WITHOUT:
        for label, choices in (("detail", detail), ("list page", pages)):
            name = f"cached {label}, changed: " + "+".join(parts)
            scenarios.append((name, lambda choices=choices: rng.choice(choices), REQUESTS))
            parts_of[name] = parts
    samples: dict[str, list[float]] = {name: [] for name, _, _ in scenarios}
    tree = Path(ecommerce.__file__).parent.parent
    print(f"app of {tree}: {ROUNDS} rounds, {REQUESTS} requests per scenario ({MISSES} uncached)")
    for round_number in range(ROUNDS):
        for name, pick, count in scenarios:
            environs = [pick() for _ in range(count)]
            with without(app, parts_of[name]):
                started = time.process_time()
                for environ in environs:
                    client.get(environ)
                samples[name].append((time.process_time() - started) / count * 1e6)
        print(f"round {round_number + 1}/{ROUNDS} done", flush=True)

    floor = statistics.median(samples["GET /healthz"])
    width = max(28, *(len(name) for name in samples))
    print(f"\n{'scenario':{width}} {'CPU us/req':>10} {'min':>8} {'max':>8} {'x healthz':>10} {'beyond':>8}")
    for name, values in samples.items():
        cpu = statistics.median(values)
        print(
            f"{name:{width}} {cpu:10.1f} {min(values):8.1f} {max(values):8.1f} "
            f"{floor / cpu:10.2f} {cpu - floor:8.1f}"
        )
    if PROFILE:
        name, pick, count = scenarios[int(PROFILE)]
        environs = [pick() for _ in range(count)]
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [client.get(environ) for environ in environs])
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(PROFILE_SORT).print_stats(PROFILE_LINES)
        print(f"\nprofile of {name} ({count} requests), by {PROFILE_SORT}:\n{out.getvalue()}")


if __name__ == "__main__":
    main()
