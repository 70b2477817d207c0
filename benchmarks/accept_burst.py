"""New connections to a busy gevent worker: gunicorn's accept batch of 1 against GEVENT_MAX_ACCEPT.

Two instances of the app (gunicorn, 2 gevent workers each, GET /healthz only, so nothing but the
server is measured) run side by side on 127.0.0.1: one with GEVENT_MAX_ACCEPT=1, which is what
gunicorn itself sets whenever it runs several workers, and one with the shipped setting. In
alternating rounds, each instance is measured twice:

- **burst:** wrk keeps BENCH_BUSY connections busy, and meanwhile BENCH_BURST new connections
  open at once and each sends one request; the figures are the time from sending that first
  request to its answer (median, p90, max over the burst);
- **wrk:** a fresh `wrk -t2 -cBENCH_CONNECTIONS -dBENCH_SECONDS` run, whose own connections open
  at its start (p50, p99, req/s).

Medians over the rounds; the ratios between the two instances are what to quote.

    .venv/bin/python benchmarks/accept_burst.py
    BENCH_ROUNDS=5 BENCH_BURST=128 .venv/bin/python benchmarks/accept_burst.py

Needs wrk (installed with apt-get when missing), PostgreSQL and Redis (the app's readiness
checks): BENCH_DATABASE_URL (default ecommerce_bench_accept, created and migrated if needed, with
a small catalog) and BENCH_REDIS_URL.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import (
    ROOT,
    app_env,
    ensure_wrk,
    free_port,
    parse_wrk,
    prepare_database,
    start_instance,
    stop,
)  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 64))
BUSY = int(os.environ.get("BENCH_BUSY", 32))
BURST = int(os.environ.get("BENCH_BURST", 64))
SHIPPED = os.environ.get("BENCH_MAX_ACCEPT", "16")
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_accept"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def burst(port: int) -> list[float]:
    """Open BURST connections, then send one request on each at once: ms to each answer."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(BURST)]
    latencies: list[float] = [0.0] * BURST
    start = threading.Barrier(BURST)

    def one(index: int) -> None:
        sock = sockets[index]
        start.wait()
        began = time.perf_counter()
        sock.sendall(REQUEST)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed a burst connection")
            answer += chunk
        latencies[index] = (time.perf_counter() - began) * 1000
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(answer[:100])

    threads = [threading.Thread(target=one, args=(index,)) for index in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in sockets:
        sock.close()
    return sorted(latencies)


def burst_under_load(wrk: str, port: int) -> dict[str, float]:
    busy = subprocess.Popen(
        [wrk, "-t1", f"-c{BUSY}", f"-d{SECONDS}s", f"http://127.0.0.1:{port}/healthz"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(min(2.0, SECONDS / 2))  # the busy connections are open and loaded
        latencies = burst(port)
    finally:
        busy.wait()
    return {
        "median": statistics.median(latencies),
        "p90": latencies[int(0.9 * (len(latencies) - 1))],
        "max": latencies[-1],
    }


def fresh_wrk(wrk: str, port: int) -> dict[str, float]:
    command = [
        wrk,
        "-t2",
        f"-c{CONNECTIONS}",
        f"-d{SECONDS}s",
        "--latency",
        f"http://127.0.0.1:{port}/healthz",
    ]
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    wrk = ensure_wrk()
    env = app_env(DATABASE_URL, REDIS_URL)
    prepare_database(env, DATABASE_URL, "--products", "10")
    variants = {"gunicorn's 1": "1", f"shipped ({SHIPPED})": SHIPPED}
    instances = {}
    try:
        for name, max_accept in variants.items():
            port = free_port()
            process = start_instance(
                f"accept-{max_accept}", port, {**env, "GEVENT_MAX_ACCEPT": max_accept}, workers="2"
            )
            instances[name] = (port, process)
        samples: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in variants}
        for round_number in range(ROUNDS):
            for name, (port, _process) in instances.items():
                samples[name].setdefault("burst", []).append(burst_under_load(wrk, port))
                samples[name].setdefault("wrk", []).append(fresh_wrk(wrk, port))
            print(f"round {round_number + 1}/{ROUNDS} done", file=sys.stderr)
    finally:
        for _port, process in instances.values():
            stop(process)

    def median(name: str, kind: str, key: str) -> float:
        return statistics.median(sample[key] for sample in samples[name][kind])

    print(
        f"\n2 gevent workers per instance, GET /healthz, {ROUNDS} alternating rounds, medians;\n"
        f"burst: {BURST} new connections while wrk keeps {BUSY} busy; wrk: -t2 -c{CONNECTIONS} -d{SECONDS}s\n"
    )
    print(
        f"{'max_accept':16} {'burst med ms':>12} {'p90 ms':>8} {'max ms':>8}"
        f" {'wrk req/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for name in variants:
        print(
            f"{name:16} {median(name, 'burst', 'median'):12.1f} {median(name, 'burst', 'p90'):8.1f}"
            f" {median(name, 'burst', 'max'):8.1f} {median(name, 'wrk', 'rps'):10.0f}"
            f" {median(name, 'wrk', 'p50'):8.2f} {median(name, 'wrk', 'p99'):8.2f}"
        )
    old, new = (list(variants)[0], list(variants)[1])
    print(
        f"\nburst median {median(old, 'burst', 'median') / median(new, 'burst', 'median'):.1f}x shorter,"
        f" wrk p99 {median(old, 'wrk', 'p99') / median(new, 'wrk', 'p99'):.1f}x shorter,"
        f" throughput {median(new, 'wrk', 'rps') / median(old, 'wrk', 'rps'):.2f}x"
    )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
