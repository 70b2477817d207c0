"""`make stack-reload` under load: does any client request fail? The reload of a baseline tree
and this tree's, alternating on the same stack, in one run.

Brings up `scripts/stack.sh` on ports, a database and a Redis database of its own (BENCH_*
below; the Redis database is flushed), then keeps clients going through nginx, back to back:

- BENCH_KEEPALIVE_CLIENTS readers and as many buyers, each on one keep-alive connection
  (``requests.Session``, which does not send a request again when the connection turns out to be
  closed: what a careless API client does);
- BENCH_FRESH_CLIENTS readers and as many buyers that open a connection per request.

Readers GET a product and the category tree in turn; buyers add one unit of a product to their
cart. While they run, BENCH_ROUNDS rounds each run two reloads, one after the other:

- ``baseline``: ``scripts/stack.sh reload`` of BENCH_BASELINE_TREE (a ``git worktree`` of an
  earlier commit, with a ``.venv`` link to this one's), on this stack's STACK_DIR: before
  reloads stopped reloading nginx, it marked the instance ``down`` in the rendered nginx.conf and
  reloaded nginx, once per instance and once more at the end;
- ``this tree``: this checkout's ``scripts/stack.sh reload`` (a drain file, no nginx reload).

Each request sent after a reload started and answered (or failed) before it ended counts for
that reload; the others are counted apart ("outside the reloads"). Printed per reload kind:
requests, failures by kind (a connection closed without an answer, a status other than
200/201, anything else), split by keep-alive and fresh connections, and the reload's duration.
At the end each buyer's cart must hold exactly the units of the adds answered 200/201 (an add
whose connection was closed without an answer never reached the app, or the sum is off and the
script says so). The client's CPU time is printed beside the figures (it shares the two cores
with the stack). The script exits non-zero when a reload fails or a cart is off.

    git worktree add /tmp/reload-before ad842c9 && ln -s "$PWD/.venv" /tmp/reload-before/.venv
    BENCH_BASELINE_TREE=/tmp/reload-before .venv/bin/python benchmarks/stack_reload.py
    .venv/bin/python benchmarks/stack_reload.py   # this tree's reload only

Settings (defaults): BENCH_ROUNDS [5], BENCH_KEEPALIVE_CLIENTS [3], BENCH_FRESH_CLIENTS [1],
BENCH_STACK_PORT [18780], BENCH_STACK_APP_PORTS [18701 18702],
BENCH_DATABASE_URL [postgresql://postgres@127.0.0.1:5432/ecommerce_bench_reload],
BENCH_REDIS_URL [redis://127.0.0.1:6379/4]. Needs nginx and prometheus (stack.sh installs them),
PostgreSQL and Redis on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import ROOT, stack_env  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
KEEPALIVE_CLIENTS = int(os.environ.get("BENCH_KEEPALIVE_CLIENTS", 3))
FRESH_CLIENTS = int(os.environ.get("BENCH_FRESH_CLIENTS", 1))
PORT = os.environ.get("BENCH_STACK_PORT", "18780")
APP_PORTS = os.environ.get("BENCH_STACK_APP_PORTS", "18701 18702")
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_reload"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
BASELINE_TREE = os.environ.get("BENCH_BASELINE_TREE")
PRODUCTS = 200
PASSWORD = "reload-bench-password"


@dataclass
class Outcome:
    sent: float
    done: float
    keepalive: bool
    method: str
    result: str  # "ok", "closed", "status <n>", "error <name>"


def stack(command: str, env: dict[str, str], tree: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(tree / "scripts" / "stack.sh"), command],
        cwd=tree,
        env=env,
        text=True,
        capture_output=True,
    )


def classify(error: requests.RequestException) -> str:
    text = repr(error)
    closed = (
        "RemoteDisconnected",
        "ConnectionResetError",
        "BadStatusLine",
        "BrokenPipeError",
        "ConnectionAborted",
    )
    if any(name in text for name in closed):
        return "closed"
    return f"error {type(error).__name__}"


class Clients:
    def __init__(self, base: str, tokens: list[str]) -> None:
        self.base = base
        self.tokens = tokens
        self.stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self.added: dict[str, int] = {token: 0 for token in tokens}
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        buyers = iter(self.tokens)
        for keepalive, count in ((True, KEEPALIVE_CLIENTS), (False, FRESH_CLIENTS)):
            for _ in range(count):
                self.threads.append(threading.Thread(target=self.read, args=(keepalive,), daemon=True))
                self.threads.append(
                    threading.Thread(target=self.buy, args=(keepalive, next(buyers)), daemon=True)
                )
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _send(self, session, keepalive: bool, method: str, path: str, **kwargs) -> bool:
        sent = time.monotonic()
        try:
            answer = session.request(method, self.base + path, timeout=30, **kwargs)
            result = "ok" if answer.status_code in (200, 201) else f"status {answer.status_code}"
        except requests.RequestException as error:
            result = classify(error)
        self.outcomes.append(Outcome(sent, time.monotonic(), keepalive, method, result))
        return result == "ok"

    def read(self, keepalive: bool) -> None:
        session = requests.Session() if keepalive else requests
        for n in itertools.count():
            if self.stop.is_set():
                return
            path = f"/api/products/{n % PRODUCTS + 1}/" if n % 2 else "/api/categories/"
            self._send(session, keepalive, "GET", path)

    def buy(self, keepalive: bool, token: str) -> None:
        session = requests.Session() if keepalive else requests
        headers = {"Authorization": f"Bearer {token}"}
        for n in itertools.count():
            if self.stop.is_set():
                return
            body = {"product_id": n % PRODUCTS + 1, "quantity": 1}
            if self._send(session, keepalive, "POST", "/api/cart/items/", json=body, headers=headers):
                self.added[token] += 1


def log_in(base: str, count: int) -> list[str]:
    tokens = []
    for n in range(count):
        username = f"reload-bench-{n}-{time.time_ns()}"
        body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
        registered = requests.post(f"{base}/api/auth/register/", json=body, timeout=30)
        registered.raise_for_status()
        login = requests.post(
            f"{base}/api/auth/login/", json={"username": username, "password": PASSWORD}, timeout=30
        )
        login.raise_for_status()
        tokens.append(login.json()["access_token"])
    return tokens


def main() -> int:
    stack_dir = tempfile.mkdtemp(prefix="bench-reload-")
    env = stack_env(
        stack_dir,
        (PORT, APP_PORTS, 18791, 18790),
        PRODUCTS,
        DATABASE_URL,
        REDIS_URL,
        JWT_ACCESS_TOKEN_EXPIRES="86400",
    )
    kinds = [("baseline", Path(BASELINE_TREE))] if BASELINE_TREE else []
    kinds.append(("this tree", ROOT))
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, capture_output=True)
    started = stack("up", env)
    if started.returncode:
        print(started.stdout, started.stderr, file=sys.stderr)
        return 1
    base = f"http://127.0.0.1:{PORT}"
    windows: list[tuple[str, float, float, int]] = []  # kind, start, end, returncode
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.monotonic()
    try:
        clients = Clients(base, log_in(base, KEEPALIVE_CLIENTS + FRESH_CLIENTS))
        clients.start()
        time.sleep(2)
        for round_number in range(ROUNDS):
            for kind, tree in kinds:
                begin = time.monotonic()
                done = stack("reload", env, tree)
                windows.append((kind, begin, time.monotonic(), done.returncode))
                print(
                    f"round {round_number + 1}, {kind}: rc {done.returncode}, {windows[-1][2] - begin:.1f} s",
                    file=sys.stderr,
                )
                if done.returncode:
                    print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                time.sleep(2)
        clients.finish()
        wall = time.monotonic() - wall_before
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        in_carts = {}
        for token in clients.tokens:
            cart = requests.get(f"{base}/api/cart/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            cart.raise_for_status()
            in_carts[token] = sum(item["quantity"] for item in cart.json()["items"])
    finally:
        stack("down", env)

    print(
        f"\nstack reloads under load: {ROUNDS} round(s), {KEEPALIVE_CLIENTS} keep-alive and "
        f"{FRESH_CLIENTS} fresh-connection readers and buyers each, back to back"
    )
    header = f"{'reload':<11} {'n':>2} {'s (median)':>10} {'requests':>9} {'failed':>7} "
    header += f"{'keep-alive':>11} {'fresh':>6}  kinds"
    print(header)
    print("-" * len(header))
    for kind, _ in kinds:
        ours = [w for w in windows if w[0] == kind]
        during = [o for o in clients.outcomes if any(w[1] <= o.sent and o.done <= w[2] for w in ours)]
        failed = [o for o in during if o.result != "ok"]
        counts: dict[str, int] = {}
        for o in failed:
            label = f"{o.method} {o.result}"
            counts[label] = counts.get(label, 0) + 1
        seconds = statistics.median(w[2] - w[1] for w in ours)
        keepalive = sum(o.keepalive for o in failed)
        print(
            f"{kind:<11} {len(ours):>2} {seconds:>10.1f} {len(during):>9} {len(failed):>7} "
            f"{keepalive:>11} {len(failed) - keepalive:>6}  "
            + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "-")
        )
    outside = [o for o in clients.outcomes if not any(w[1] <= o.sent and o.done <= w[2] for w in windows)]
    print(f"outside the reloads: {len(outside)} requests, {sum(o.result != 'ok' for o in outside)} failed")
    mismatched = {
        t: (clients.added[t], in_carts[t]) for t in clients.tokens if clients.added[t] != in_carts[t]
    }
    print(
        f"carts: {sum(in_carts.values())} units, {sum(clients.added.values())} adds answered 200/201"
        + (f"; MISMATCH {mismatched}" if mismatched else " (equal)")
    )
    print(f"client CPU: {cpu:.1f} s in {wall:.0f} s ({cpu / wall:.0%} of one core, of the machine's 2)")
    reload_failed = [w for w in windows if w[3]]
    if reload_failed:
        print(f"{len(reload_failed)} reload(s) exited non-zero (their output is above)")
    return 1 if mismatched or reload_failed else 0


if __name__ == "__main__":
    sys.exit(main())
