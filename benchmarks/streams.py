"""Live stock streams through the stack: how many a worker holds, what each costs, how fast a
change reaches every client, and what open streams cost the catalog's cached reads.

Brings up `scripts/stack.sh` on ports and a database of its own (nginx least_conn over two
gunicorn gevent instances of WEB_CONCURRENCY workers each, PostgreSQL, Redis), then, for each of
BENCH_ROUNDS rounds:

1. cached product detail with wrk (BENCH_CONNECTIONS connections, BENCH_SECONDS) and no stream
   open: the baseline;
2. BENCH_STREAMS streams opened on one product through nginx, until each has its first event;
   the streams each worker holds (`ss`), and the resident memory of the app workers and of
   nginx before and after (the memory per stream);
3. the same wrk run with the streams open (idle): the ratio to the baseline;
4. BENCH_MOVES stock changes of the product (an admin PATCH through nginx, one every
   BENCH_MOVE_EVERY seconds, longer than the 1 s coalescing interval so that each change is its
   own event): the delay from sending the PATCH (so: an upper bound on the delay from its
   commit) to each client's receipt of the new stock, p50 and p99 over every delivery, and of
   the last client per change;
5. the streams closed, and the baseline again: the figure without streams is the mean of the
   runs before and after.

The client is this process: greenlets on gevent's sockets reading the raw responses (a
requests session per stream would spend more of the two cores than the server does). Its own
CPU time during the moves is reported beside the figures.

    .venv/bin/python benchmarks/streams.py
    BENCH_STREAMS=500 BENCH_ROUNDS=1 .venv/bin/python benchmarks/streams.py
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from gevent import socket  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cache_vs_db  # noqa: E402
from cache_vs_db import BIN, LUA_RANDOM_PRODUCT, ROOT, ensure_wrk, run_wrk  # noqa: E402

STREAMS = int(os.environ.get("BENCH_STREAMS", 2000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
MOVES = int(os.environ.get("BENCH_MOVES", 15))
MOVE_EVERY = float(os.environ.get("BENCH_MOVE_EVERY", 1.3))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", 64))
HOT_SET = int(os.environ.get("BENCH_HOT_SET", 200))
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", 1000))
PORT = int(os.environ.get("BENCH_STACK_PORT", "18680"))
APP_PORTS = os.environ.get("BENCH_STACK_APP_PORTS", "18601 18602")
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_streams"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
PRODUCT_ID = 1
PASSWORD = "bench-password-123"
STOCK = re.compile(rb'"stock_quantity":(\d+)')


def stack(command: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), command], check=True, env=env, cwd=ROOT)


def request(method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


class Streams:
    """BENCH_STREAMS raw HTTP/1.1 connections to the product's event stream, read by greenlets:
    every stock value each one sees, with the time it arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.first = 0
        self.sockets: list[socket.socket] = []
        self.greenlets: list[gevent.Greenlet] = []
        self.errors = 0
        self.closing = False

    def _read(self, sock: socket.socket) -> None:
        request_line = (
            f"GET /api/products/{PRODUCT_ID}/events/ HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        try:
            sock.sendall(request_line)
            seen_first = False
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                now = time.perf_counter()
                for match in STOCK.finditer(chunk):
                    self.arrivals[int(match.group(1))].append(now)
                    if not seen_first:
                        seen_first = True
                        self.first += 1
        except OSError:
            if not self.closing:
                self.errors += 1

    def open(self, count: int) -> float:
        started = time.perf_counter()
        for number in range(count):
            sock = socket.create_connection(("127.0.0.1", PORT))
            self.sockets.append(sock)
            self.greenlets.append(gevent.spawn(self._read, sock))
            if number % 100 == 99:
                gevent.sleep(0.05)  # a steady arrival, not one SYN burst
        deadline = time.perf_counter() + 120
        while self.first < count and time.perf_counter() < deadline:
            gevent.sleep(0.05)
        if self.first < count:
            raise SystemExit(
                f"only {self.first} of {count} streams got their first event ({self.errors} errors)"
            )
        return time.perf_counter() - started

    def close(self) -> None:
        self.closing = True
        for sock in self.sockets:
            sock.close()
        gevent.killall(self.greenlets, timeout=10)


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def group_pids(leader: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == leader:
            pids.append(int(stat.parent.name))
    return pids


def streams_per_worker() -> dict[int, int]:
    """Established connections each app worker process holds on its instance's port."""
    counts: dict[int, int] = defaultdict(int)
    output = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    ports = {f":{port}" for port in APP_PORTS.split()}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and any(fields[2].endswith(port) for port in ports):
            for pid in re.findall(r"pid=(\d+)", line):
                counts[int(pid)] += 1
    return dict(counts)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def move_stock(streams: Streams, token: str, base: int) -> tuple[list[float], list[float], float]:
    """MOVES changes of the stock: the delay of every delivery and of the last client per change
    (ms), and this process's CPU seconds meanwhile."""
    all_delays: list[float] = []
    last_delays: list[float] = []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for move in range(MOVES):
        value = base + move
        sent = time.perf_counter()
        request("PATCH", f"/api/products/{PRODUCT_ID}/", {"stock_quantity": value}, token)
        deadline = sent + 10
        while len(streams.arrivals[value]) < STREAMS and time.perf_counter() < deadline:
            gevent.sleep(0.01)
        delays = [(arrived - sent) * 1000 for arrived in streams.arrivals[value]]
        if len(delays) < STREAMS:
            print(f"  change {move}: {len(delays)} of {STREAMS} streams got it within 10 s", file=sys.stderr)
        all_delays.extend(delays)
        last_delays.append(max(delays) if len(delays) == STREAMS else 10_000.0)
        gevent.sleep(max(0.0, sent + MOVE_EVERY - time.perf_counter()))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return all_delays, last_delays, cpu


def main() -> None:
    wrk = ensure_wrk()
    stack_dir = tempfile.mkdtemp(prefix="bench-streams-")
    env = cache_vs_db.stack_env(stack_dir, (PORT, APP_PORTS, 18691, 18690), PRODUCTS, DATABASE_URL, REDIS_URL)
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    stack("up", env)
    results: dict[str, list[float]] = defaultdict(list)
    try:
        subprocess.run(
            [str(BIN / "flask"), "users", "create-admin", "--username", "bench-admin",
             "--email", "bench-admin@example.com", "--password", PASSWORD],
            check=False, env={**env, "FLASK_APP": "wsgi.py"}, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        login = {"username": "bench-admin", "password": PASSWORD}
        token = request("POST", "/api/auth/login/", login)["access_token"]
        base = f"http://127.0.0.1:{PORT}"
        for product_id in range(1, HOT_SET + 1):
            urllib.request.urlopen(f"{base}/api/products/{product_id}/").read()
        cache_vs_db.CONNECTIONS, cache_vs_db.SECONDS = CONNECTIONS, SECONDS
        app_leaders = [int((Path(stack_dir) / "pids" / f"app{i}.pid").read_text().split()[0]) for i in (1, 2)]
        nginx_leader = int((Path(stack_dir) / "pids" / "nginx.pid").read_text().split()[0])
        for round_number in range(ROUNDS):
            without = run_wrk(wrk, f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET)
            app_pids = [pid for leader in app_leaders for pid in group_pids(leader) if pid != leader]
            nginx_pids = group_pids(nginx_leader)
            rss_before, nginx_before = rss_kib(app_pids), rss_kib(nginx_pids)
            streams = Streams()
            opened_in = streams.open(STREAMS)
            gevent.sleep(1)
            rss_after, nginx_after = rss_kib(app_pids), rss_kib(nginx_pids)
            per_worker = streams_per_worker()
            with_streams = run_wrk(wrk, f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET)
            delays, last, cpu = move_stock(streams, token, 100_000 * (round_number + 1))
            streams.close()
            gevent.sleep(2)
            # The baseline brackets the run with streams: before they opened and after they closed.
            after = run_wrk(wrk, f"{base}/", LUA_RANDOM_PRODUCT % HOT_SET)
            without = {key: (without[key] + after[key]) / 2 for key in ("rps", "p99")}
            results["cached rps, no streams"].append(without["rps"])
            results["cached rps, streams open"].append(with_streams["rps"])
            results["cached p99 ms, no streams"].append(without["p99"])
            results["cached p99 ms, streams open"].append(with_streams["p99"])
            results["ratio"].append(with_streams["rps"] / without["rps"])
            results["app KiB per stream"].append((rss_after - rss_before) / STREAMS)
            results["nginx KiB per stream"].append((nginx_after - nginx_before) / STREAMS)
            results["delivery p50 ms"].append(statistics.median(delays))
            results["delivery p99 ms"].append(percentile(delays, 0.99))
            results["last client p50 ms"].append(statistics.median(last))
            results["last client p99 ms"].append(percentile(last, 0.99))
            results["client CPU share during moves"].append(cpu / (MOVES * MOVE_EVERY))
            results["seconds to open all"].append(opened_in)
            print(
                f"round {round_number + 1}/{ROUNDS}: streams per worker {sorted(per_worker.values())}, "
                f"opened in {opened_in:.1f}s, errors {streams.errors}",
                file=sys.stderr,
            )
            results["most streams on one worker"].append(max(per_worker.values(), default=0))
    finally:
        stack("down", env)
    print(
        f"\n{STREAMS} streams on one product through nginx (2 instances, {ROUNDS} rounds, medians); "
        f"{MOVES} stock changes per round, one every {MOVE_EVERY}s; wrk -t2 -c{CONNECTIONS} {SECONDS}s"
    )
    for name, values in results.items():
        median = statistics.median(values)
        shown = f"{median:.1%}" if name in ("ratio", "client CPU share during moves") else f"{median:,.1f}"
        print(f"  {name:34} {shown:>10}   (rounds: {', '.join(f'{v:,.2f}' for v in values)})")


if __name__ == "__main__":
    main()
