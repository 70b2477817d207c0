"""Where the load lands on the Patroni cluster: the read/write split under a mixed load.

Needs the cluster (`make patroni-up`). Starts the app in gunicorn against it (DATABASE_URL to the
primary, DATABASE_REPLICA_URL to the standbys), then runs buyers (add to cart, check out) and
catalog readers for BENCH_SECONDS, and prints:

* transactions per node (pg_stat_database deltas) and the app's connections per node and pool
  (pg_stat_activity, sampled), so the split is seen from the database's side;
* the app's routing counter (ecommerce_db_routed_reads_total) by target and reason.

Run twice by default: with the catalog cache (as deployed) and without it (CACHE_TYPE=NullCache,
every catalog read reaches the database), side by side.

    .venv/bin/python benchmarks/read_split.py
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from pathlib import Path

import psycopg2
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "patroni"))

import cluster as patroni_rest  # noqa: E402

from benchmarks.cache_vs_db import BIN, free_port, start_instance, stop  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
BUYERS = int(os.environ.get("BENCH_BUYERS", "4"))
READERS = int(os.environ.get("BENCH_READERS", "8"))
REST_URLS = os.environ.get(
    "PATRONI_REST_URLS", "http://127.0.0.1:8008 http://127.0.0.1:8009 http://127.0.0.1:8010"
).split()


def cluster_urls() -> tuple[str, str, list[int]]:
    env = subprocess.run(
        [str(ROOT / "scripts" / "patroni.sh"), "env"], capture_output=True, text=True, check=True
    )
    urls = dict(re.findall(r"^(\w+)='(.*)'$", env.stdout, re.M))
    ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", urls["DATABASE_URL"])]
    return urls["DATABASE_URL"], urls["DATABASE_REPLICA_URL"], ports


def query(port: int, sql: str) -> list[tuple]:
    with closing(psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="ecommerce")) as conn:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()


def node_stats(ports: list[int]) -> dict[int, tuple[str, int]]:
    """Per node: its role, and the transactions its ecommerce database has run so far."""
    stats = {}
    for port in ports:
        [(standby, transactions)] = query(
            port,
            "SELECT pg_is_in_recovery(), xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = 'ecommerce'",
        )
        stats[port] = ("standby" if standby else "primary", transactions)
    return stats


def sample_connections(ports: list[int], stop_event: threading.Event, seen: Counter) -> None:
    """Add up, per node and pool (application_name), the app's connections running a query."""
    while not stop_event.is_set():
        for port in ports:
            for name, count in query(
                port,
                "SELECT application_name, count(*) FROM pg_stat_activity"
                " WHERE application_name LIKE 'ecommerce%' AND state = 'active' GROUP BY 1",
            ):
                seen[(port, name)] += count
        time.sleep(0.2)


def routed(base_url: str) -> dict[str, float]:
    found = {}
    for line in requests.get(base_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("ecommerce_db_routed_reads_total{"):
            labels, value = line.rsplit(" ", 1)
            target = re.search(r'target="(\w+)"', labels).group(1)
            reason = re.search(r'reason="(\w+)"', labels).group(1)
            found[f"{target}/{reason}"] = float(value)
    return found


def customer(base_url: str) -> str:
    name = "split" + uuid.uuid4().hex[:10]
    requests.post(
        base_url + "/api/auth/register",
        json={"username": name, "email": f"{name}@shop.example", "password": "password123"},
        timeout=10,
    )
    return requests.post(
        base_url + "/api/auth/login", json={"username": name, "password": "password123"}, timeout=10
    ).json()["access_token"]


def run(label: str, env: dict[str, str], ports: list[int], product_ids: list[int]) -> None:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="read-split-"))
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    process = start_instance(label.split()[0], port, env, log_path=workdir / "gunicorn.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        tokens = [customer(base_url) for _ in range(BUYERS)]
        stop_event = threading.Event()
        counts = Counter()

        def buyer(token: str) -> None:
            http, headers = requests.Session(), {"Authorization": f"Bearer {token}"}
            while not stop_event.is_set():
                line = {"product_id": random.choice(product_ids), "quantity": 1}
                http.post(base_url + "/api/cart/items/", json=line, headers=headers, timeout=15)
                answer = http.post(base_url + "/api/orders/", json={}, headers=headers, timeout=15)
                counts[f"checkout {answer.status_code}"] += 1

        def reader() -> None:
            http = requests.Session()
            while not stop_event.is_set():
                path = random.choice(
                    [
                        f"/api/products/{random.choice(product_ids)}/",
                        f"/api/products/?page={random.randint(1, 20)}",
                        "/api/categories/",
                    ]
                )
                counts[f"read {http.get(base_url + path, timeout=15).status_code}"] += 1

        before_nodes, before_routed = node_stats(ports), routed(base_url)
        seen: Counter = Counter()
        threads = [threading.Thread(target=buyer, args=(t,)) for t in tokens]
        threads += [threading.Thread(target=reader) for _ in range(READERS)]
        threads.append(threading.Thread(target=sample_connections, args=(ports, stop_event, seen)))
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        stop_event.set()
        for thread in threads:
            thread.join()
        after_nodes, after_routed = node_stats(ports), routed(base_url)

        print(f"\n== {label}: {SECONDS:.0f} s, {BUYERS} buyers, {READERS} catalog readers")
        print("requests: " + ", ".join(f"{key}: {value}" for key, value in sorted(counts.items())))
        print(
            f"{'node':<8}{'role':<9}{'transactions/s':>16}{'active write conns':>20}{'active read conns':>19}"
        )
        for node_port in ports:
            role, transactions = after_nodes[node_port]
            rate = (transactions - before_nodes[node_port][1]) / SECONDS
            print(
                f"{node_port:<8}{role:<9}{rate:>16.0f}{seen[(node_port, 'ecommerce')]:>20}"
                f"{seen[(node_port, 'ecommerce-read')]:>19}"
            )
        total = sum(after_routed.get(k, 0) - before_routed.get(k, 0) for k in after_routed)
        print("routed reads (ecommerce_db_routed_reads_total, delta):")
        for key in sorted(after_routed):
            delta = after_routed[key] - before_routed.get(key, 0)
            if delta:
                print(f"  {key:<32}{delta:>8.0f}  {100 * delta / total:5.1f}%")
    finally:
        stop(process)


def main() -> None:
    if patroni_rest.leader(REST_URLS) is None:
        sys.exit("no Patroni cluster answers: run `make patroni-up` first")
    database_url, replica_url, ports = cluster_urls()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/5")
    env = {
        "DATABASE_URL": database_url,
        "DATABASE_REPLICA_URL": replica_url,
        "REDIS_URL": redis_url,
        "AUTH_RATE_LIMIT": "100000/minute",
        "LOG_LEVEL": "warning",
    }
    setup = {**os.environ, **env, "FLASK_APP": "wsgi.py"}
    for command in (["db", "upgrade"], ["seed", "--products", "2000"]):
        subprocess.run([str(BIN / "flask"), *command], env=setup, cwd=ROOT, check=True, capture_output=True)
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=int(patroni_rest.leader(REST_URLS)["port"]),
            user="postgres",
            dbname="ecommerce",
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute("UPDATE products SET stock_quantity = 1000000")
        cursor.execute("SELECT id FROM products ORDER BY id")
        product_ids = [row[0] for row in cursor.fetchall()]
    run("with the catalog cache", env, ports, product_ids)
    run("without a cache (CACHE_TYPE=NullCache)", {**env, "CACHE_TYPE": "NullCache"}, ports, product_ids)


if __name__ == "__main__":
    main()
