"""Checkout throughput and latency: 50 buyers on distinct products vs all on one hot product.

One instance of the app (gunicorn, BENCH_WORKERS gevent workers) runs on 127.0.0.1 against
PostgreSQL and Redis, with the rate limits off. BENCH_BUYERS buyers register and log in through
the API; each has its own thread and its own persistent HTTP connection, and loops for
BENCH_SECONDS: add one unit of a product to the cart (POST /api/cart/items/), then check out
(POST /api/orders/). Only the checkout request is timed. Orders/s counts the checkouts that
returned 201 inside the BENCH_SECONDS window (the iterations that overrun it are still checked
in the database); p50 and p99 are over every checkout that returned 201.

- "distinct products": every buyer buys its own product, so checkouts lock different rows.
- "one hot product": every buyer buys the same product (stock 10^6, it never runs out), so
  every checkout queues on that product's row lock (``SELECT ... FOR NO KEY UPDATE``).
- "hot, limited stock": the same race on a product with BENCH_LIMITED_STOCK units; each buyer
  stops at its first 409 (insufficient stock). Orders must add up to exactly that stock, and
  the stock must end at 0: no oversell, no undersell.

The scenarios run in alternating order over BENCH_ROUNDS rounds (after a short unmeasured
warm-up); the figures are medians over the rounds, and hot / distinct is the ratio to quote.
Before every run the tables the loops churn are vacuumed (VACUUM ANALYZE), so that every run
starts from the same maintained database. After every run the database is checked: no product
has negative stock, the orders the run made equal the 201s the client saw, and their quantities
add up to the stock the run consumed.
The script exits non-zero if any check fails.

    make bench-checkout                    # or: .venv/bin/python benchmarks/checkout.py
    BENCH_ROUNDS=5 BENCH_SECONDS=20 BENCH_BUYERS=100 BENCH_WORKERS=4 make bench-checkout

With BENCH_BEFORE_TREE (another checkout of the project, e.g. a ``git worktree`` of an earlier
commit with a ``.venv`` link to this one's), a second instance serves that tree on the same
database and Redis, and every round measures both, in alternating order; the figures are printed
per tree, with this tree's ratio to the other's:

    git worktree add /tmp/before 230caaa && ln -s "$PWD/.venv" /tmp/before/.venv
    BENCH_BEFORE_TREE=/tmp/before make bench-checkout

Environment (defaults in brackets):

    BENCH_DATABASE_URL   [postgresql://postgres@127.0.0.1:5432/ecommerce_bench_checkout]
                         created, migrated and seeded with BENCH_PRODUCTS products if needed
    BENCH_REDIS_URL      [redis://127.0.0.1:6379/6]
    BENCH_PRODUCTS       [20000]   catalog size (at least BENCH_BUYERS + 2)
    BENCH_BUYERS         [50]      concurrent buyers (threads, one connection each)
    BENCH_SECONDS        [10]      length of each measured run
    BENCH_ROUNDS         [3]       rounds; the figures are medians over them
    BENCH_WORKERS        [2]       gunicorn gevent workers (WEB_CONCURRENCY)
    BENCH_LIMITED_STOCK  [250]     stock of the limited-stock run; 0 skips that run
    BENCH_WARMUP         [2]       seconds of unmeasured warm-up per scenario; 0 skips it
    BENCH_TIMEOUT        [30]      client timeout per request, seconds
    BENCH_BEFORE_TREE    [unset]   another source tree to measure side by side ("before")
    BENCH_SCENARIOS      [distinct,hot]  which of distinct and hot to run (the limited-stock
                         run is set by BENCH_LIMITED_STOCK); one alone, e.g. to profile it

The gunicorn log (LOG_LEVEL=WARNING: every 5xx leaves a line) is written to
$TMPDIR/bench-checkout.log; the script prints how many warnings and errors it holds.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import app_env, free_port, start_instance, stop  # noqa: E402
from cache_vs_db import prepare_database as shared_prepare_database  # noqa: E402

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_checkout"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", 20_000))
BUYERS = int(os.environ.get("BENCH_BUYERS", 50))
SECONDS = float(os.environ.get("BENCH_SECONDS", 10))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
LIMITED_STOCK = int(os.environ.get("BENCH_LIMITED_STOCK", 250))
WARMUP = float(os.environ.get("BENCH_WARMUP", 2))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", 30))
BEFORE_TREE = os.environ.get("BENCH_BEFORE_TREE")

PLENTY = 1_000_000
PASSWORD = "bench-checkout-password"
LOG_PATH = Path(tempfile.gettempdir()) / "bench-checkout.log"
DISTINCT, HOT, LIMITED = "distinct products", "one hot product", "hot, limited stock"
SCENARIOS = [
    {"distinct": DISTINCT, "hot": HOT}[name.strip()]
    for name in os.environ.get("BENCH_SCENARIOS", "distinct,hot").split(",")
    if name.strip()
]


def connect_db():
    import psycopg2

    connection = psycopg2.connect(DATABASE_URL)
    connection.autocommit = True
    return connection


def prepare_database(env: dict[str, str]) -> None:
    # Reads this module's settings at call time (payments.py points them at its own database).
    shared_prepare_database(env, DATABASE_URL, "--products", str(PRODUCTS), "--customers", "0")


class Client:
    """One persistent keep-alive connection; errors come back as a status of None, never raise."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port, self.token = port, token
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, body: object = None) -> tuple[int | None, bytes]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            self.connection.request(method, path, payload, headers)
            response = self.connection.getresponse()
            data = response.read()
            if response.will_close:
                self.close()
            return response.status, data
        except (OSError, http.client.HTTPException) as error:
            # The request may or may not have reached the app: never retried, counted instead.
            self.close()
            return None, f"{type(error).__name__}: {error}".encode()


@dataclass
class Buyer:
    username: str
    token: str
    user_id: int


@dataclass
class Run:
    scenario: str
    orders: int = 0
    in_window: int = 0  # orders whose checkout returned before the deadline
    window: float = 0.0  # the measured window: BENCH_SECONDS, or the time to sell out
    elapsed: float = 0.0  # until the last buyer finished its last iteration
    latencies: list[float] = field(default_factory=list)  # seconds, checkout requests only
    errors: Counter = field(default_factory=Counter)  # "cart 500", "checkout 503", ...
    samples: dict[str, str] = field(default_factory=dict)  # first body seen for each error kind
    sold_out: int = 0  # 409 insufficient stock (limited-stock run)
    client_cpu: float = 0.0  # cores the benchmark process used during the run

    @property
    def rate(self) -> float:
        return self.in_window / self.window if self.window else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000

    def error(self, kind: str, body: bytes) -> None:
        self.errors[kind] += 1
        self.samples.setdefault(kind, body[:300].decode(errors="replace"))


def make_buyers(port: int, database) -> list[Buyer]:
    """Register (409 when a previous run made the account) and log in, a few at a time."""

    def one(number: int) -> Buyer:
        username = f"bench_buyer_{number:04d}"
        client = Client(port)
        status, body = client.request(
            "POST",
            "/api/auth/register/",
            {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        if status not in (201, 409):
            raise SystemExit(f"register {username}: {status} {body[:300]!r}; see {LOG_PATH}")
        status, body = client.request(
            "POST", "/api/auth/login/", {"username": username, "password": PASSWORD}
        )
        client.close()
        if status != 200:
            raise SystemExit(f"login {username}: {status} {body[:300]!r}; see {LOG_PATH}")
        return Buyer(username, json.loads(body)["access_token"], 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        buyers = list(pool.map(one, range(1, BUYERS + 1)))
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT username, id FROM users WHERE username = ANY(%s)", ([b.username for b in buyers],)
        )
        ids = dict(cursor.fetchall())
    for buyer in buyers:
        buyer.user_id = ids[buyer.username]
    return buyers


def pick_products(database) -> tuple[list[int], int, int]:
    """BUYERS distinct products, one hot product, one limited product; the first two get PLENTY."""
    with database.cursor() as cursor:
        cursor.execute("SELECT id FROM products ORDER BY id LIMIT %s", (BUYERS + 2,))
        ids = [row[0] for row in cursor.fetchall()]
        if len(ids) < BUYERS + 2:
            raise SystemExit(f"need at least {BUYERS + 2} products, the catalog has {len(ids)}")
        cursor.execute("UPDATE products SET stock_quantity = %s WHERE id = ANY(%s)", (PLENTY, ids[:-1]))
    return ids[:BUYERS], ids[BUYERS], ids[BUYERS + 1]


def set_stock(database, product_id: int, stock: int) -> None:
    # Straight to the table: nothing this benchmark times reads the product's cached copy, and
    # the next checkout of the product purges that copy anyway.
    with database.cursor() as cursor:
        cursor.execute("UPDATE products SET stock_quantity = %s WHERE id = %s", (stock, product_id))


# The tables every checkout loop writes. Each order adds a dead cart line, a dead version of a
# product, cart and user row: without a vacuum between runs, each run would measure a database
# more bloated than the one before (autovacuum may be off on the server, or not yet have come).
CHURNED_TABLES = "cart_items, shopping_carts, products, users, idempotency_keys"


def vacuum(database) -> None:
    """VACUUM (ANALYZE) the tables the loops churn, as autovacuum would between two sales."""
    with database.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {CHURNED_TABLES}")


def snapshot(database, product_ids: list[int]) -> tuple[int, dict[int, int]]:
    with database.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM orders")
        last_order = cursor.fetchone()[0]
        cursor.execute("SELECT id, stock_quantity FROM products WHERE id = ANY(%s)", (product_ids,))
        return last_order, dict(cursor.fetchall())


def verify(database, run: Run, buyers: list[Buyer], before: tuple[int, dict[int, int]]) -> list[str]:
    """What the database says about the run; returns the failed checks (empty when all hold)."""
    last_order, stock_before = before
    _, stock_after = snapshot(database, list(stock_before))
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT o.id), coalesce(sum(i.quantity), 0) FROM orders o "
            "JOIN order_items i ON i.order_id = o.id WHERE o.id > %s AND o.user_id = ANY(%s)",
            (last_order, [b.user_id for b in buyers]),
        )
        orders, units = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM products WHERE stock_quantity < 0")
        negative = cursor.fetchone()[0]
    consumed = sum(stock_before[pid] - stock_after[pid] for pid in stock_before)
    failures = []
    if negative:
        failures.append(f"{negative} product(s) with negative stock")
    if units != consumed:
        failures.append(f"order quantities {units} != stock consumed {consumed}")
    if orders != run.orders:
        failures.append(f"{orders} orders in the database, but the client saw {run.orders} 201s")
    if run.scenario == LIMITED:
        left = sum(stock_after.values())
        if units != LIMITED_STOCK or left != 0:
            failures.append(f"limited stock {LIMITED_STOCK}: {units} units ordered, {left} left")
    status = "ok" if not failures else "FAILED: " + "; ".join(failures)
    print(
        f"  db check {run.scenario}: {orders} orders, {units} units, stock consumed {consumed}: {status}",
        file=sys.stderr,
    )
    return failures


def run_scenario(scenario: str, port: int, buyers: list[Buyer], products: list[int], seconds: float) -> Run:
    """Every buyer loops: add one unit of its product, check out (timed). Threads start together."""
    run = Run(scenario)
    lock = threading.Lock()
    limited = scenario == LIMITED
    clock = {"started": 0.0, "deadline": 0.0, "cpu": 0.0}
    finished: list[float] = []
    last_orders: list[float] = []

    def start_clock() -> None:  # runs once, before the barrier releases anyone
        clock["cpu"], clock["started"] = time.process_time(), time.perf_counter()
        clock["deadline"] = clock["started"] + seconds

    barrier = threading.Barrier(len(buyers) + 1, action=start_clock)

    def buyer_loop(buyer: Buyer, product_id: int) -> None:
        client = Client(port, buyer.token)
        latencies: list[float] = []
        errors: list[tuple[str, bytes]] = []
        orders = in_window = sold_out = 0
        last_order = 0.0
        status, body = client.request("DELETE", "/api/cart/")  # a clean cart (and a warm connection)
        if status != 204:
            errors.append((f"empty cart {status}", body))
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        deadline = clock["deadline"]
        while time.perf_counter() < deadline:
            status, body = client.request(
                "POST", "/api/cart/items/", {"product_id": product_id, "quantity": 1}
            )
            if status not in (200, 201):
                errors.append((f"cart add {status}", body))
                if status is None:
                    time.sleep(0.05)  # do not spin on a dead server
                continue
            started = time.perf_counter()
            status, body = client.request("POST", "/api/orders/", {})
            ended = time.perf_counter()
            if status == 201:
                orders += 1
                in_window += ended <= deadline
                last_order = max(last_order, ended)
                latencies.append(ended - started)
            elif limited and status == 409 and b"stock" in body:
                sold_out += 1
                break
            else:
                errors.append((f"checkout {status}", body))
                if status is None:
                    time.sleep(0.05)
        client.close()
        with lock:
            finished.append(time.perf_counter())
            last_orders.append(last_order)
            run.orders += orders
            run.in_window += in_window
            run.sold_out += sold_out
            run.latencies.extend(latencies)
            for kind, error_body in errors:
                run.error(kind, error_body)

    threads = [
        threading.Thread(target=buyer_loop, args=(buyer, products[i % len(products)]), daemon=True)
        for i, buyer in enumerate(buyers)
    ]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise SystemExit(f"{scenario}: the buyers were not ready within 60 s; see {LOG_PATH}") from None
    for thread in threads:
        thread.join(seconds + 2 * TIMEOUT + 10)
    if any(thread.is_alive() for thread in threads):
        raise SystemExit(f"{scenario}: buyers still running long after the deadline; see {LOG_PATH}")
    run.elapsed = max(finished) - clock["started"]
    # Orders/s counts the orders that completed inside the window: the iterations that overrun
    # the deadline are checked in the database but not counted. A limited-stock run's window
    # ends with its last order.
    run.window = max(0.0, max(last_orders) - clock["started"]) if limited else seconds
    run.client_cpu = (time.process_time() - clock["cpu"]) / run.elapsed
    return run


def log_summary(log_path: Path = LOG_PATH) -> tuple[int, Counter]:
    """How many WARNING/ERROR/CRITICAL lines a gunicorn log holds, and its distinct messages."""
    levels, messages = 0, Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line:
                levels += 1
                messages[line.strip()[:200]] += 1
            continue
        level = str(record.get("level", "")).upper() if isinstance(record, dict) else ""
        if level in ("WARNING", "ERROR", "CRITICAL"):
            levels += 1
            exception = str(record.get("exc_info") or "").strip().splitlines()[-1:]
            messages[" | ".join([str(record.get("message", "")), *exception])[:300]] += 1
    return levels, messages


def main() -> None:
    # Tokens outlive any number of rounds.
    base_env = app_env(DATABASE_URL, REDIS_URL, JWT_ACCESS_TOKEN_EXPIRES="86400")
    load_before = os.getloadavg()
    prepare_database(base_env)
    database = connect_db()
    distinct, hot, limited = pick_products(database)
    trees = {"before": Path(BEFORE_TREE), "after": None} if BEFORE_TREE else {"": None}
    ports = {name: free_port() for name in trees}
    servers = []
    failures: list[str] = []
    samples: dict[tuple[str, str], list[Run]] = {}
    try:
        for name, tree in trees.items():
            log_path = LOG_PATH.with_name(f"bench-checkout{'-' + name if name else ''}.log")
            servers.append(
                start_instance(
                    f"bench-checkout{'-' + name if name else ''}",
                    ports[name],
                    base_env,
                    log_path=log_path,
                    workers=WORKERS,
                    cwd=tree,
                )
            )
        buyers = make_buyers(ports[next(iter(trees))], database)
        plans = {DISTINCT: distinct, HOT: [hot], LIMITED: [limited]}

        def measured(tree: str, scenario: str, seconds: float) -> Run:
            if scenario == LIMITED:
                set_stock(database, limited, LIMITED_STOCK)
                seconds = 600.0  # buyers stop at their first 409; this is only a safety net
            vacuum(database)
            before = snapshot(database, plans[scenario])
            run = run_scenario(scenario, ports[tree], buyers, plans[scenario], seconds)
            label = f"{tree} {scenario}".strip()
            failures.extend(f"{label}: {failure}" for failure in verify(database, run, buyers, before))
            return run

        if WARMUP > 0:
            for tree in trees:
                for scenario in SCENARIOS:
                    measured(tree, scenario, WARMUP)
            print("warm-up done", file=sys.stderr)
        for round_number in range(1, ROUNDS + 1):
            order = list(SCENARIOS) if round_number % 2 else list(reversed(SCENARIOS))
            if LIMITED_STOCK > 0:
                order.append(LIMITED)
            tree_order = list(trees) if round_number % 2 else list(reversed(trees))
            for scenario in order:
                for tree in tree_order:
                    run = measured(tree, scenario, SECONDS)
                    samples.setdefault((tree, scenario), []).append(run)
                    print(
                        f"round {round_number}/{ROUNDS} {tree:6} {scenario:20} {run.rate:8.1f} orders/s "
                        f"p50 {run.percentile(0.5):7.1f} ms p99 {run.percentile(0.99):7.1f} ms "
                        f"errors {sum(run.errors.values())} client {run.client_cpu:.2f} cores",
                        file=sys.stderr,
                    )
    finally:
        for server in servers:
            stop(server)
        database.close()
    load_after = os.getloadavg()

    def median(tree: str, scenario: str, value) -> float:
        return statistics.median(value(run) for run in samples[(tree, scenario)])

    print(
        f"\n{BUYERS} buyers, {WORKERS} gevent workers, {os.cpu_count()} cores, "
        f"{ROUNDS} rounds x {SECONDS:g}s, medians; only POST /api/orders/ is timed\n"
    )
    print(
        f"{'tree':6} {'scenario':20} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'orders':>7} {'client cores':>13}"
    )
    for tree, scenario in samples:
        print(
            f"{tree:6} {scenario:20} {median(tree, scenario, lambda r: r.rate):9.1f} "
            f"{median(tree, scenario, lambda r: r.percentile(0.5)):8.1f} "
            f"{median(tree, scenario, lambda r: r.percentile(0.99)):8.1f} "
            f"{median(tree, scenario, lambda r: sum(r.errors.values())):7.0f} "
            f"{median(tree, scenario, lambda r: r.orders):7.0f} "
            f"{median(tree, scenario, lambda r: r.client_cpu):13.2f}"
        )
    for tree in trees if {DISTINCT, HOT} <= set(SCENARIOS) else ():
        rate = median(tree, HOT, lambda r: r.rate) / median(tree, DISTINCT, lambda r: r.rate)
        p50 = median(tree, HOT, lambda r: r.percentile(0.5)) / median(
            tree, DISTINCT, lambda r: r.percentile(0.5)
        )
        p99 = median(tree, HOT, lambda r: r.percentile(0.99)) / median(
            tree, DISTINCT, lambda r: r.percentile(0.99)
        )
        print(
            f"\n{tree + ': ' if tree else ''}hot / distinct: orders/s {rate:.2f}x, "
            f"p50 latency {p50:.2f}x, p99 latency {p99:.2f}x"
        )
    if BEFORE_TREE:
        print("\nafter / before (this tree / BENCH_BEFORE_TREE), medians:")
        for scenario in (DISTINCT, HOT, LIMITED):
            if ("after", scenario) not in samples:
                continue
            rate = median("after", scenario, lambda r: r.rate) / median("before", scenario, lambda r: r.rate)
            p50 = median("after", scenario, lambda r: r.percentile(0.5)) / median(
                "before", scenario, lambda r: r.percentile(0.5)
            )
            p99 = median("after", scenario, lambda r: r.percentile(0.99)) / median(
                "before", scenario, lambda r: r.percentile(0.99)
            )
            print(f"  {scenario:20} orders/s {rate:.2f}x, p50 {p50:.2f}x, p99 {p99:.2f}x")
    for tree in trees:
        if (tree, LIMITED) in samples:
            sold = [run.sold_out for run in samples[(tree, LIMITED)]]
            seconds = [run.window for run in samples[(tree, LIMITED)]]
            print(
                f"{tree + ': ' if tree else ''}limited stock {LIMITED_STOCK}: sold out in "
                f"{statistics.median(seconds):.2f}s (median); buyers turned away with 409 per round: {sold}"
            )

    errors = Counter()
    first: dict[str, str] = {}
    for (tree, _scenario), runs in samples.items():
        for run in runs:
            for kind, count in run.errors.items():
                label = f"{tree} {run.scenario}: {kind}".strip()
                errors[label] += count
                first.setdefault(label, run.samples[kind])
    if errors:
        print("\nerrors over all measured rounds (first response body of each kind):")
        for kind, count in errors.most_common():
            print(f"  {count:6d}  {kind}: {first[kind]}")
    for tree in trees:
        log_path = LOG_PATH.with_name(f"bench-checkout{'-' + tree if tree else ''}.log")
        lines, messages = log_summary(log_path)
        print(f"\ngunicorn log {log_path}: {lines} warning/error line(s)")
        for message, count in messages.most_common(10):
            print(f"  {count:6d}  {message}")
    print(
        f"\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}"
    )
    if failures:
        print("\nDATABASE CHECKS FAILED:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print(
        "database checks passed after every run: no negative stock, orders == 201s seen, "
        "order quantities == stock consumed"
    )


if __name__ == "__main__":
    main()
