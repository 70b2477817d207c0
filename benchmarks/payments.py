"""Payment latency and throughput: POST a payment, poll until the background job has charged it.

One instance of the app (gunicorn, BENCH_WORKERS gevent workers, rate limits off) and one Huey
consumer (``huey_consumer ecommerce.worker.huey -k thread -w BENCH_CONSUMER_WORKERS``) run on
127.0.0.1 against PostgreSQL and Redis, with the sandbox payment gateway (its ledger, a SQLite
file, in a fresh temporary folder) and no MAIL_SERVER (emails are .eml files in a fresh
temporary MAIL_FOLDER). The database is dropped and made again, and the Redis db flushed,
before every run, so every run starts from the same empty state.

BENCH_BUYERS buyers register and log in through the API and check out orders (one unit of a
product each; not timed) until there is one pending order for every payment. Then
BENCH_CONCURRENCY client threads (each with its own keep-alive connection) make BENCH_PAYMENTS
payments between them, round-robin over the buyers. Each payment:

    POST /api/orders/<id>/payments/   {"payment_method": "card", "token": "tok_visa"} -> 202
    GET  /api/payments/<payment id>/  every BENCH_POLL_MS (10) ms, until it is not "pending"

Two latencies are reported per payment, as p50, p90, p99 and max:

- client: from the moment the POST is sent to the arrival of the first poll that shows
  ``succeeded`` (so it includes up to one poll interval and one poll's round trip);
- database: from ``payments.created_at`` (written by the web request) to the ``created_at`` of
  the order's ``pending -> paid`` row in ``order_events`` (written by the job), which does not
  depend on the polling at all. It is split at the sandbox ledger's ``created_at`` of the
  charge (same host clock): before it, the job was queued or starting; after it, the job
  recorded the result. The POST's and the polls' own round trips are listed too.

Throughput is succeeded payments per second of wall time (first POST sent to last success
seen). BENCH_WARMUP payments are made first and left out of the figures (the consumer's first
jobs open its connections); they are in the checks. After the run, once every owed email has
been sent, the script checks that every payment succeeded, every paid order has exactly one
``pending -> paid`` event, exactly one confirmation .eml file in the mail folder and one sent
``order_emails`` row, that the worker sent exactly one confirmation per paid order (its own
``ecommerce_order_emails_total`` counter, scraped from WORKER_METRICS_PORT, since a second send
would overwrite the same file), and that the sandbox ledger holds exactly one approved charge
per payment (same key, amount and transaction id) and none for anything else. It exits non-zero
if any check fails.

    make bench-payments                    # or: .venv/bin/python benchmarks/payments.py
    BENCH_PAYMENTS=1000 BENCH_CONCURRENCY=50 BENCH_CONSUMER_WORKERS=8 make bench-payments

Environment (defaults in brackets):

    BENCH_DATABASE_URL      [postgresql://postgres@127.0.0.1:5432/ecommerce_bench_payments]
                            dropped, created, migrated and seeded at the start of every run
    BENCH_REDIS_URL         [redis://127.0.0.1:6379/3]   flushed at the start of every run
    BENCH_PAYMENTS          [200]   measured payments (one order each)
    BENCH_BUYERS            [20]    buyers the orders are spread over
    BENCH_CONCURRENCY       [20]    payments in flight at a time (client threads)
    BENCH_WORKERS           [2]     gunicorn gevent workers (WEB_CONCURRENCY)
    BENCH_CONSUMER_WORKERS  [4]     Huey consumer worker threads
    BENCH_WARMUP            [4]     unmeasured payments first; 0 skips them
    BENCH_POLL_MS           [10]    pause between two polls of one payment
    BENCH_PAYMENT_TIMEOUT   [60]    seconds after which a payment still pending is given up on
    BENCH_TIMEOUT           [30]    client timeout per request, seconds

Logs: $TMPDIR/bench-payments.log (gunicorn, LOG_LEVEL=WARNING: every 5xx leaves a line) and
$TMPDIR/bench-payments-consumer.log (the consumer); the script prints their warning/error
lines. The ledger and the mail folder are left in the temporary folder it prints.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkout  # noqa: E402  (its helpers: gunicorn, buyers, HTTP client, database, log summary)
from cache_vs_db import BIN, ROOT, app_env, free_port, start_instance, stop  # noqa: E402

DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_bench_payments"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
PAYMENTS = int(os.environ.get("BENCH_PAYMENTS", 200))
BUYERS = int(os.environ.get("BENCH_BUYERS", 20))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 20))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
CONSUMER_WORKERS = os.environ.get("BENCH_CONSUMER_WORKERS", "4")
WARMUP = int(os.environ.get("BENCH_WARMUP", 4))
POLL = float(os.environ.get("BENCH_POLL_MS", 10)) / 1000
PAYMENT_TIMEOUT = float(os.environ.get("BENCH_PAYMENT_TIMEOUT", 60))

GUNICORN_LOG = Path(tempfile.gettempdir()) / "bench-payments.log"
CONSUMER_LOG = Path(tempfile.gettempdir()) / "bench-payments-consumer.log"
TOKEN = "tok_visa"
EMAIL_FILE = re.compile(r"^order-(\d+)-order_confirmation_at_shop\.example\.eml$")

# checkout.py's helpers read its module settings: point them at this benchmark's database, log,
# buyers and gunicorn workers (BENCH_TIMEOUT is read by checkout itself, for its Client).
checkout.DATABASE_URL = DATABASE_URL
checkout.LOG_PATH = GUNICORN_LOG
checkout.BUYERS = BUYERS
checkout.WORKERS = WORKERS
checkout.PRODUCTS = BUYERS + 100  # pick_products needs BUYERS + 2


@dataclass
class Order:
    id: int
    token: str  # the buyer's access token


@dataclass
class Result:
    order_id: int
    payment_id: int | None = None
    outcome: str = "pending"  # succeeded, failed, pending (timed out), error
    accepted: float = 0.0  # POST round trip, seconds
    latency: float = 0.0  # POST sent -> first poll showing succeeded, seconds
    polls: int = 0
    poll_times: list[float] = field(default_factory=list)  # each poll's round trip, seconds
    sent: float = 0.0  # perf_counter at POST send
    done: float = 0.0  # perf_counter at the deciding poll's arrival
    errors: list[tuple[str, bytes]] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


def reset_state(base_env: dict[str, str]) -> None:
    """Drop and recreate this benchmark's database (checkout's helper migrates and seeds it)
    and flush its Redis db: no queued job, cached response or row from an earlier run."""
    import psycopg2
    import redis
    from sqlalchemy.engine import make_url

    url = make_url(DATABASE_URL)
    admin = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    admin.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    checkout.prepare_database(base_env)


def start_consumer(env: dict[str, str], metrics_port: int) -> subprocess.Popen:
    log = open(CONSUMER_LOG, "w")  # noqa: SIM115
    command = [str(BIN / "huey_consumer"), "ecommerce.worker.huey", "-k", "thread"]
    process = subprocess.Popen(
        [*command, "-w", CONSUMER_WORKERS],
        env={**env, "WORKER_METRICS_PORT": str(metrics_port)},
        cwd=ROOT,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the worker module serves its metrics once the app is built
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"the Huey consumer did not start; see {CONSUMER_LOG}")


def worker_metrics(metrics_port: int) -> dict[str, float]:
    """The consumer's counters, keyed by sample name and labels as written."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("ecommerce_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def make_orders(port: int, buyers: list[checkout.Buyer], products: list[int], count: int) -> list[Order]:
    """``count`` pending orders, one unit each, spread round-robin over the buyers (returned
    in that order, so consecutive payments belong to different buyers)."""
    per_buyer = [list(range(i, count, len(buyers))) for i in range(len(buyers))]
    slots: list[Order | None] = [None] * count

    def one(index: int) -> None:
        buyer, product_id = buyers[index], products[index]
        client = checkout.Client(port, buyer.token)
        for slot in per_buyer[index]:
            status, body = client.request(
                "POST", "/api/cart/items/", {"product_id": product_id, "quantity": 1}
            )
            if status not in (200, 201):
                raise SystemExit(f"cart add for {buyer.username}: {status} {body[:300]!r}")
            status, body = client.request("POST", "/api/orders/", {})
            if status != 201:
                raise SystemExit(f"checkout for {buyer.username}: {status} {body[:300]!r}")
            slots[slot] = Order(json.loads(body)["id"], buyer.token)
        client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(len(buyers))))
    return [order for order in slots if order is not None]


def pay(client: checkout.Client, order: Order) -> Result:
    result = Result(order.id)
    client.token = order.token
    result.sent = time.perf_counter()
    status, body = client.request(
        "POST", f"/api/orders/{order.id}/payments/", {"payment_method": "card", "token": TOKEN}
    )
    result.accepted = time.perf_counter() - result.sent
    if status != 202:
        result.outcome = "error"
        result.errors.append((f"POST payment {status}", body))
        return result
    result.payment_id = json.loads(body)["id"]
    deadline = result.sent + PAYMENT_TIMEOUT
    while True:
        time.sleep(POLL)
        asked = time.perf_counter()
        status, body = client.request("GET", f"/api/payments/{result.payment_id}/")
        now = time.perf_counter()
        result.polls += 1
        result.poll_times.append(now - asked)
        if status == 200:
            state = json.loads(body)["status"]
            if state != "pending":
                result.outcome, result.done, result.latency = state, now, now - result.sent
                return result
        else:
            result.errors.append((f"GET payment {status}", body))
            if status is None:
                time.sleep(0.05)  # do not spin on a dead server
        if now >= deadline:
            result.done = now
            return result  # still pending


def run_payments(port: int, orders: list[Order], threads: int) -> tuple[list[Result], float]:
    """Pay every order, ``threads`` at a time; returns the results and the client CPU used."""
    work: queue.Queue[Order] = queue.Queue()
    for order in orders:
        work.put(order)
    results: list[Result] = []
    lock = threading.Lock()

    def loop() -> None:
        client = checkout.Client(port)
        mine = []
        while True:
            try:
                order = work.get_nowait()
            except queue.Empty:
                break
            mine.append(pay(client, order))
        client.close()
        with lock:
            results.extend(mine)

    cpu = time.process_time()
    workers = [threading.Thread(target=loop, daemon=True) for _ in range(min(threads, len(orders)))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return results, time.process_time() - cpu


def wait_for_emails(database, timeout: float = 60) -> int:
    """Wait until no owed email is left unsent; returns how many still are."""
    deadline = time.monotonic() + timeout
    while True:
        with database.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM order_emails WHERE status <> 'sent'")
            left = cursor.fetchone()[0]
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def database_latencies(
    database, ledger_path: Path, payment_ids: list[int]
) -> tuple[list[float], list[float], list[float], float]:
    """From the timestamps the app and the gateway wrote, in seconds: payments.created_at -> the
    order's pending->paid event; payments.created_at -> the sandbox ledger's charge (the job has
    started: the queue's share); the charge -> the paid event (the job's share after charging);
    and the span from the first payment to the last paid event."""
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT p.idempotency_key, p.created_at, e.created_at FROM payments p JOIN order_events e "
            "ON e.order_id = p.order_id AND e.from_status = 'pending' AND e.to_status = 'paid' "
            "WHERE p.id = ANY(%s)",
            (payment_ids,),
        )
        rows = cursor.fetchall()
    ledger = sqlite3.connect(ledger_path)
    charged = dict(ledger.execute("SELECT idempotency_key, created_at FROM charges"))
    ledger.close()
    if not rows:
        return [], [], [], math.nan
    span = (max(paid for *_, paid in rows) - min(created for _, created, _ in rows)).total_seconds()
    total = [(paid - created).total_seconds() for _, created, paid in rows]
    queued = [charged[key] - created.timestamp() for key, created, _ in rows if key in charged]
    recorded = [paid.timestamp() - charged[key] for key, _, paid in rows if key in charged]
    return total, queued, recorded, span


def check(database, ledger_path: Path, mail_folder: Path, metrics: dict[str, float]) -> tuple[list[str], str]:
    """Every payment of the run against the database, the mail folder, the worker's own
    counters and the sandbox ledger; returns the failed checks and a summary of what was seen."""
    failures = []
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT p.id, p.order_id, p.status, p.idempotency_key, p.amount::text, p.transaction_id, "
            "p.attempts, o.order_status FROM payments p JOIN orders o ON o.id = p.order_id"
        )
        payments = cursor.fetchall()
        cursor.execute(
            "SELECT order_id, count(*) FROM order_events "
            "WHERE from_status = 'pending' AND to_status = 'paid' GROUP BY order_id"
        )
        paid_events = dict(cursor.fetchall())
        cursor.execute(
            "SELECT order_id, status, attempts FROM order_emails WHERE kind = 'order_confirmation'"
        )
        email_rows = {order_id: (status, attempts) for order_id, status, attempts in cursor.fetchall()}
        cursor.execute("SELECT order_status, count(*) FROM orders GROUP BY order_status")
        orders_by_status = dict(cursor.fetchall())
    statuses = Counter(status for _, _, status, *_ in payments)
    if statuses != Counter({"succeeded": len(payments)}):
        failures.append(f"payments by status {dict(statuses)}: every payment should have succeeded")
    paid_orders = {order_id for _, order_id, status, *_ in payments if status == "succeeded"}
    if len(paid_orders) != statuses["succeeded"]:
        failures.append("an order has more than one succeeded payment")
    not_paid = [o for _, o, s, *_, order_status in payments if s == "succeeded" and order_status != "paid"]
    if not_paid:
        failures.append(f"{len(not_paid)} order(s) with a succeeded payment are not paid: {not_paid[:10]}")
    if orders_by_status.get("paid", 0) != len(paid_orders):
        failures.append(f"orders by status {orders_by_status}, but {len(paid_orders)} paid by this run")
    events = Counter(paid_events.get(order_id, 0) for order_id in paid_orders)
    if set(events) != {1} or set(paid_events) - paid_orders:
        failures.append(f"pending->paid events per paid order {dict(events)} (should all be 1)")
    retried = Counter(attempts for *_, attempts, _ in payments)
    if set(retried) != {1}:
        failures.append(f"payments by job attempts {dict(retried)} (a charge was attempted more than once)")

    # Emails: one owed row per paid order, sent once, one file per paid order and nothing else.
    unsent = {o: row for o, row in email_rows.items() if row != ("sent", 1)}
    if set(email_rows) != paid_orders or unsent:
        failures.append(
            f"confirmation rows: {len(email_rows)} for {len(paid_orders)} paid orders; "
            f"not (sent, 1 attempt): {dict(list(unsent.items())[:10])}"
        )
    files = Counter()
    strays = []
    for path in sorted(mail_folder.iterdir()) if mail_folder.exists() else []:
        match = EMAIL_FILE.match(path.name)
        if match:
            files[int(match.group(1))] += 1
        else:
            strays.append(path.name)
    if set(files) != paid_orders or set(files.values()) - {1} or strays:
        failures.append(
            f"mail folder: confirmation files for {len(files)} orders, {len(paid_orders)} paid; "
            f"missing {sorted(paid_orders - set(files))[:10]}, "
            f"unexpected {sorted(set(files) - paid_orders)[:10]}, "
            f"other files {strays[:10]}"
        )
    sent = metrics.get('ecommerce_order_emails_total{kind="order_confirmation"}', 0)
    if sent != len(paid_orders):
        failures.append(
            f"the worker counted {sent:.0f} confirmation sends for {len(paid_orders)} paid orders"
        )

    # The ledger: exactly one approved charge per payment, under its key, for its amount.
    ledger = sqlite3.connect(ledger_path)
    charges = ledger.execute(
        "SELECT idempotency_key, amount, approved, transaction_id FROM charges"
    ).fetchall()
    gateway_attempts = Counter(count for (count,) in ledger.execute("SELECT count FROM attempts"))
    ledger.close()
    by_key = Counter(key for key, *_ in charges)
    expected = {key: (amount, txn) for _, _, _, key, amount, txn, *_ in payments}
    doubled = [key for key, n in by_key.items() if n != 1]
    orphans = [key for key in by_key if key not in expected]
    missing = [key for key in expected if key not in by_key]
    wrong = [
        key
        for key, amount, approved, txn in charges
        if key in expected and (not approved or amount != expected[key][0] or txn != expected[key][1])
    ]
    if len(charges) != len(payments) or doubled or orphans or missing or wrong:
        failures.append(
            f"ledger: {len(charges)} charges for {len(payments)} payments; duplicated keys {doubled[:5]}, "
            f"unknown keys {orphans[:5]}, payments without a charge {missing[:5]}, "
            f"charges not matching their payment {wrong[:5]}"
        )
    if set(gateway_attempts) - {1}:
        failures.append(f"gateway attempts per key {dict(gateway_attempts)} (should all be 1)")
    summary = (
        f"checked (warm-up included): {len(payments)} payments {dict(statuses)}; {len(paid_orders)} "
        f"paid orders; {sum(files.values())} confirmation files, {sent:.0f} sends counted by the "
        f"worker; {len(charges)} ledger charges ({len(by_key)} distinct keys)"
    )
    return failures, summary


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-payments-"))
    ledger_path, mail_folder = folder / "sandbox_gateway.db", folder / "mail"
    base_env = app_env(
        DATABASE_URL,
        REDIS_URL,
        JWT_ACCESS_TOKEN_EXPIRES="86400",
        PAYMENT_GATEWAY="sandbox",
        SANDBOX_GATEWAY_PATH=str(ledger_path),
        MAIL_FOLDER=str(mail_folder),
    )
    for name in ("MAIL_SERVER", "PROMETHEUS_MULTIPROC_DIR", "WORKER_METRICS_PORT"):
        base_env.pop(name, None)
    load_before = os.getloadavg()
    reset_state(base_env)
    database = checkout.connect_db()
    products, _, _ = checkout.pick_products(database)
    port, metrics_port = free_port(), free_port()
    server = start_instance("bench-payments", port, base_env, log_path=GUNICORN_LOG, workers=WORKERS)
    consumer = None
    try:
        consumer = start_consumer(base_env, metrics_port)
        buyers = checkout.make_buyers(port, database)
        orders = make_orders(port, buyers, products, WARMUP + PAYMENTS)
        print(f"{len(buyers)} buyers, {len(orders)} pending orders; paying", file=sys.stderr)
        if WARMUP:
            warm, _ = run_payments(port, orders[:WARMUP], CONCURRENCY)
            print(f"warm-up: {Counter(r.outcome for r in warm)}", file=sys.stderr)
        results, client_cpu = run_payments(port, orders[WARMUP:], CONCURRENCY)
        unsent = wait_for_emails(database)
        metrics = worker_metrics(metrics_port)
        payment_ids = [r.payment_id for r in results if r.payment_id is not None]
        db_latencies, db_queued, db_recorded, db_span = database_latencies(database, ledger_path, payment_ids)
        failures, seen = check(database, ledger_path, mail_folder, metrics)
        if unsent:
            failures.append(f"{unsent} owed email(s) still unsent 60 s after the last payment")
    finally:
        if consumer is not None:
            stop(consumer)
        stop(server)
        database.close()
    load_after = os.getloadavg()

    outcomes = Counter(r.outcome for r in results)
    succeeded = [r for r in results if r.outcome == "succeeded"]
    client = [r.latency for r in succeeded]
    wall = max(r.done for r in succeeded) - min(r.sent for r in results) if succeeded else math.nan
    polls = sum(r.polls for r in results)
    print(
        f"\n{PAYMENTS} payments ({TOKEN}), {CONCURRENCY} at a time, {BUYERS} buyers; {WORKERS} gevent "
        f"workers, Huey consumer -k thread -w {CONSUMER_WORKERS}; {os.cpu_count()} cores; "
        f"poll every {POLL * 1000:g} ms, give up after {PAYMENT_TIMEOUT:g} s\n"
    )
    print(f"{'latency (ms)':44} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, values in (
        ("client: POST sent -> poll shows succeeded", client),
        ("database: payment created -> order paid", db_latencies),
        ("  of which: payment created -> ledger charge", db_queued),
        ("  and: ledger charge -> order paid", db_recorded),
        ("POST /payments/ round trip (202)", [r.accepted for r in results if r.payment_id]),
        ("GET /payments/<id>/ round trip (polls)", [t for r in results for t in r.poll_times]),
    ):
        figures = " ".join(f"{percentile(values, q):8.1f}" for q in (0.5, 0.9, 0.99, 1.0))
        print(f"{name:44} {len(values):5d} {figures}")
    print(
        f"\nthroughput: {len(succeeded) / wall:.1f} payments/s (client: {len(succeeded)} in {wall:.2f} s); "
        f"database: {len(db_latencies) / db_span:.1f} payments/s ({len(db_latencies)} in {db_span:.2f} s)"
    )
    print(
        f"outcomes: succeeded {outcomes['succeeded']}, failed {outcomes['failed']}, "
        f"still pending after {PAYMENT_TIMEOUT:g} s {outcomes['pending']}, request errors {outcomes['error']}"
    )
    print(
        f"polls: {polls} ({polls / len(results):.1f} per payment, {polls / wall:.0f}/s); "
        f"client CPU {client_cpu / wall:.2f} cores"
    )
    errors = Counter(kind for r in results for kind, _ in r.errors)
    if errors:
        first: dict[str, bytes] = {}
        for r in results:
            for kind, body in r.errors:
                first.setdefault(kind, body)
        print("HTTP errors (first response body of each kind):")
        for kind, count in errors.most_common():
            print(f"  {count:6d}  {kind}: {first[kind][:300].decode(errors='replace')}")
    for name, path in (("gunicorn", GUNICORN_LOG), ("consumer", CONSUMER_LOG)):
        lines, messages = checkout.log_summary(path)
        print(f"{name} log {path}: {lines} warning/error line(s)")
        for message, count in messages.most_common(10):
            print(f"  {count:6d}  {message}")
    print(f"ledger and mail folder kept in {folder}")
    print(seen)
    print(
        f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}"
    )
    if failures:
        print("\nCHECKS FAILED:\n  " + "\n  ".join(failures))
        raise SystemExit(1)
    print(
        "checks passed: every payment succeeded; each paid order has one pending->paid event, one "
        "confirmation sent once (one .eml file) and one approved ledger charge for its amount"
    )


if __name__ == "__main__":
    main()
