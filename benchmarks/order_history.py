"""Order history for a customer with 10 orders vs one with 10,000, side by side.

GET /api/orders/?page_size=10 (newest first, with their lines) through gunicorn + gevent, wrk
alternating between the two customers' tokens in rounds; medians. The page size equals the
small history, so both customers' pages hold the same number of orders. The claim being checked: the
page costs the same whatever the customer's history (an index scan that stops after one page,
three queries per request).

    .venv/bin/python benchmarks/order_history.py
    BENCH_ROUNDS=5 BENCH_ORDERS=10000 .venv/bin/python benchmarks/order_history.py

Before/after a change in one run: BENCH_BASELINE=<git ref> starts a second instance whose source
is this checkout with BENCH_BASELINE_PATHS (default ecommerce/orders) as they are at that ref,
and the rounds alternate over both instances and both customers (docs/orders_bottleneck.md):

    BENCH_BASELINE=HEAD BENCH_ROUNDS=5 .venv/bin/python benchmarks/order_history.py

Uses its own database (BENCH_DATABASE_URL, default ecommerce_bench_orders) and Redis db 5.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import (  # noqa: E402
    ROOT,
    app_env,
    ensure_wrk,
    flask,
    free_port,
    run_wrk,
    start_instance,
    stop,
)

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_orders"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
BIG = int(os.environ.get("BENCH_ORDERS", 10_000))
SMALL = 10
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
OTHERS = 90_000  # orders of other customers, so the table is not just these two
BASELINE = os.environ.get("BENCH_BASELINE", "")
BASELINE_PATHS = os.environ.get("BENCH_BASELINE_PATHS", "ecommerce/orders").split()


def prepare(env: dict[str, str]) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(DATABASE_URL)
    admin = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{url.database}"')
        cursor.execute(f'CREATE DATABASE "{url.database}"')
    admin.close()
    flask("db", "upgrade", env=env)
    flask("seed", "--products", "1000", "--customers", "3", env=env)
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM users WHERE username IN ('customer1', 'customer2', 'customer3') ORDER BY id"
        )
        small, big, other = (row[0] for row in cursor.fetchall())
        # Orders spread over a year, two lines each.
        cursor.execute(
            "INSERT INTO orders (user_id, order_status, total_amount, created_at, updated_at) "
            "SELECT CASE WHEN g <= %(small)s THEN %(s)s "
            "WHEN g <= %(small)s + %(big)s THEN %(b)s ELSE %(o)s END, "
            "'pending', 42.00, now() - (g * interval '3 minutes'), now() "
            "FROM generate_series(1, %(total)s) g",
            {"small": SMALL, "big": BIG, "s": small, "b": big, "o": other, "total": SMALL + BIG + OTHERS},
        )
        cursor.execute(
            "INSERT INTO order_items (order_id, product_id, product_name, quantity, price) "
            "SELECT o.id, 1 + (o.id * k) % 1000, 'Seeded product', k, 21.00 "
            "FROM orders o CROSS JOIN (VALUES (1), (2)) AS lines(k)"
        )
        cursor.execute(
            "UPDATE users SET orders_count = (SELECT COUNT(*) FROM orders WHERE orders.user_id = users.id)"
        )
    connection.close()
    connection = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE orders")
        cursor.execute("VACUUM ANALYZE order_items")
    connection.close()


def baseline_tree(ref: str, paths: list[str]) -> Path:
    """A copy of the app's source from this checkout, with ``paths`` as they are at ``ref``."""
    tree = Path(tempfile.mkdtemp(prefix="orders-baseline-"))
    shutil.copytree(ROOT / "ecommerce", tree / "ecommerce", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("wsgi.py", "gunicorn.conf.py"):
        shutil.copy2(ROOT / name, tree / name)
    for path in paths:
        target = tree / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, *paths], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def same_responses(variants: dict, scripts: dict, customers: dict) -> None:
    """Before and after must answer byte for byte the same (body and X-Pagination)."""
    for name in customers:
        answers = set()
        for variant, (port, _) in variants.items():
            bearer = scripts[(variant, name)].split('"Bearer ')[1].split('"')[0]
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/orders/?page_size={SMALL}",
                headers={"Authorization": f"Bearer {bearer}"},
            )
            with urllib.request.urlopen(request) as response:
                answers.add((response.read(), response.headers["X-Pagination"]))
        if len(answers) != 1:
            raise SystemExit(f"before and after answer differently for {name}")


def token(port: int, username: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/auth/login/",
        data=json.dumps({"username": username, "password": "password123"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.load(urllib.request.urlopen(request))["access_token"]


def main() -> None:
    wrk = ensure_wrk()
    env = app_env(DATABASE_URL, REDIS_URL)
    prepare(env)
    variants = {"current": (free_port(), None)}
    if BASELINE:
        variants = {
            f"{BASELINE} (before)": (free_port(), baseline_tree(BASELINE, BASELINE_PATHS)),
            **variants,
        }
    servers = []
    customers = {f"{SMALL} orders": "customer1", f"{BIG} orders": "customer2"}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for index, (port, tree) in enumerate(variants.values()):
            servers.append(start_instance(f"orders-{index}", port, env, cwd=tree))
        scripts = {
            (variant, name): f'wrk.headers["Authorization"] = "Bearer {token(port, username)}"\n'
            for variant, (port, _) in variants.items()
            for name, username in customers.items()
        }
        if BASELINE:
            same_responses(variants, scripts, customers)
        for round_number in range(1, ROUNDS + 1):
            for (variant, name), script in scripts.items():
                port = variants[variant][0]
                samples.setdefault((variant, name), []).append(
                    run_wrk(wrk, f"http://127.0.0.1:{port}/api/orders/?page_size={SMALL}", script)
                )
            print(f"round {round_number}/{ROUNDS} done", file=sys.stderr)
    finally:
        for server in servers:
            stop(server)
        for _, tree in variants.values():
            if tree is not None:
                shutil.rmtree(tree, ignore_errors=True)

    print(
        f"\nGET /api/orders/?page_size={SMALL}, {SMALL + BIG + OTHERS} orders in all, "
        f"medians of {ROUNDS} rounds\n"
    )
    print(f"{'variant':16} {'customer':16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    medians = {}
    for key, runs in samples.items():
        medians[key] = {field: statistics.median(run[field] for run in runs) for field in runs[0]}
        m = medians[key]
        print(f"{key[0]:16} {key[1]:16} {m['rps']:8.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['errors']:8.0f}")
    small_name, big_name = list(customers)
    for variant in variants:
        ratio = medians[(variant, big_name)]["rps"] / medians[(variant, small_name)]["rps"]
        print(f"{variant}: throughput, {BIG} orders / {SMALL} orders = {ratio:.2f}x")
    if BASELINE:
        before, after = variants
        for name in customers:
            rps = medians[(after, name)]["rps"] / medians[(before, name)]["rps"]
            p50 = medians[(after, name)]["p50"] / medians[(before, name)]["p50"]
            print(f"{name}: after / before throughput = {rps:.2f}x, p50 = {p50:.2f}x")


if __name__ == "__main__":
    main()
