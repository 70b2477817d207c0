"""What nginx.conf's drain switch costs per request: nginx with the switch (``set $pool``, then
one ``if (-f drain/appN)`` per instance: a stat(2) each) against the same nginx without it, in
one run, alternating.

Both are minimal nginx processes on 127.0.0.1 (one worker, no access log) that answer 204
themselves, so the switch is the only work that differs, and nginx's share of a request is as
small as it gets: the ratio here is the most the switch can cost. Through the stack a request
also costs an app instance, so its share there is smaller still. wrk -t2 -c64, BENCH_ROUNDS
rounds of BENCH_SECONDS, medians; BENCH_INSTANCES if-lines (the stack has one per instance).

    .venv/bin/python benchmarks/nginx_drain_switch.py
    BENCH_INSTANCES=8 .venv/bin/python benchmarks/nginx_drain_switch.py
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import ensure_wrk, parse_wrk  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", 2))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PORTS = {"without the switch": 18881, "with the switch": 18882}


def config(folder: Path, port: int, switch: bool) -> str:
    lines = ["set $pool ecommerce;"]
    lines += [
        f"if (-f {folder}/drain/app{n}) {{ set $pool ecommerce_without_app{n}; }}"
        for n in range(1, INSTANCES + 1)
    ]
    return f"""
worker_processes 1;
pid {folder}/nginx-{port}.pid;
error_log {folder}/error-{port}.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        {" ".join(lines) if switch else ""}
        location / {{ return 204; }}
    }}
}}
"""


def main() -> int:
    wrk = ensure_wrk()
    folder = Path(tempfile.mkdtemp(prefix="bench-drain-switch-"))
    (folder / "drain").mkdir()
    processes = []
    try:
        for name, port in PORTS.items():
            path = folder / f"{port}.conf"
            path.write_text(config(folder, port, name == "with the switch"))
            processes.append(
                subprocess.Popen(
                    [NGINX, "-c", str(path), "-p", f"{folder}/", "-g", "daemon off;"], start_new_session=True
                )
            )
        for port in PORTS.values():
            for _ in range(50):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/")
                    break
                except OSError:
                    time.sleep(0.1)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in PORTS}
        for _ in range(ROUNDS):
            for name, port in PORTS.items():
                out = subprocess.run(
                    [wrk, "-t2", "-c64", f"-d{SECONDS}s", "--latency", f"http://127.0.0.1:{port}/"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                samples[name].append(parse_wrk(out))
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)

    print(
        f"nginx answering 204 itself, wrk -t2 -c64, {ROUNDS} x {SECONDS} s alternating, medians; "
        f"{INSTANCES} if-lines (wrk shares the 2 cores with nginx)"
    )
    rps = {name: statistics.median(s["rps"] for s in runs) for name, runs in samples.items()}
    for name, runs in samples.items():
        rounds = ", ".join(f"{s['rps']:,.0f}" for s in runs)
        p99 = statistics.median(s["p99"] for s in runs)
        print(f"  {name:<20} {rps[name]:>10,.0f} req/s  p99 {p99:.2f} ms  (rounds: {rounds})")
    ratio = rps["with the switch"] / rps["without the switch"]
    print(f"  with / without: {ratio:.3f}x req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
