"""The report's HTTP load: a threaded client on keep-alive connections (http.client).

- ``cached_vs_uncached``: random product details from a hot set, against the normal instance
  and the one with ``CACHE_TYPE=NullCache``, in alternating rounds (as
  ``benchmarks/cache_vs_db.py`` does with wrk), medians over the rounds;
- ``mixed_load``: a shop's mix for a fixed time (catalog reads, carts, checkouts, payments,
  order history and a few misses), for the Prometheus window of the monitoring chapter.

Every loop is bounded in time and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scripts.report.live import bench

CUSTOMER_PASSWORD = "password123"  # flask seed's demo customers customer1..customer5
SORTS = ("price", "-price", "name", "-created_at", "-rating")
QUOTE_ZONES = ("DE-NORTH", "DE-SOUTH", "AT", "NL", "FR", "PL")  # the demo carrier network's


class Client:
    """One keep-alive connection; reconnects once when the server has closed it."""

    def __init__(self, base_url: str, timeout: float = 10) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.connection: http.client.HTTPConnection | None = None
        self.token: str | None = None

    def request(self, method: str, path: str, body: object = None, **headers: str) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.connection.request(method, path, body=payload, headers=sent)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: object = None, **headers: str) -> tuple[int, object]:
        status, raw = self.request(method, path, body, **headers)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def login(self, username: str) -> None:
        status, body = self.json(
            "POST", "/api/auth/login/", {"username": username, "password": CUSTOMER_PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"login as {username}: HTTP {status} {body}")
        self.token = body["access_token"]

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def product_ids(base_url: str, limit: int, *, in_stock: bool = False) -> list[int]:
    """The ids of up to ``limit`` products, read from the API's list."""
    client, ids, page = Client(base_url), [], 1
    stock = "&in_stock=true" if in_stock else ""
    while len(ids) < limit:
        status, body = client.json("GET", f"/api/products/?page={page}&page_size=100{stock}")
        if status != 200 or not body:
            break
        if not isinstance(body, list) or not body:
            break
        ids.extend(item["id"] for item in body)
        page += 1
    client.close()
    if not ids:
        raise RuntimeError(f"no products listed by {base_url}/api/products/")
    return ids[:limit]


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Nearest rank, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000


def _timed_loop(base_url: str, threads: int, seconds: float, step) -> Run:
    """Run ``step(client, rng, run, lock)`` in ``threads`` threads until ``seconds`` have passed."""
    run, lock = Run(), threading.Lock()
    start_line = threading.Barrier(threads + 1)
    deadline: list[float] = []

    def worker(number: int) -> None:
        client, rng = Client(base_url), random.Random(number)
        start_line.wait()
        try:
            while time.monotonic() < deadline[0]:
                step(client, rng, run, lock)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    started = time.monotonic()
    deadline.append(started + seconds)
    start_line.wait()
    for thread in pool:
        thread.join(timeout=seconds + 30)
    run.seconds = time.monotonic() - started
    return run


def _read_products(base_url: str, ids: list[int], threads: int, seconds: float) -> Run:
    def step(client: Client, rng: random.Random, run: Run, lock: threading.Lock) -> None:
        began = time.perf_counter()
        status, _ = client.request("GET", f"/api/products/{rng.choice(ids)}/")
        elapsed = time.perf_counter() - began
        with lock:
            run.latencies.append(elapsed)
            run.statuses[status] += 1

    return _timed_loop(base_url, threads, seconds, step)


def cached_vs_uncached(
    cached_url: str, uncached_url: str, *, seconds: float, rounds: int, threads: int = 8, hot_set: int = 200
) -> dict:
    """Product detail throughput with and without the cache, medians of alternating rounds."""
    ids = product_ids(cached_url, hot_set)
    for url in (cached_url, uncached_url):  # same rows in the database's buffers for both
        client = Client(url)
        for product_id in ids:
            client.request("GET", f"/api/products/{product_id}/")
        client.close()
    runs: dict[str, list[Run]] = {"cached": [], "uncached": []}
    for _ in range(rounds):
        runs["cached"].append(_read_products(cached_url, ids, threads, seconds))
        runs["uncached"].append(_read_products(uncached_url, ids, threads, seconds))
    hits = {
        name: bench().cache_hits(urlsplit(url).port)
        for name, url in (("cached", cached_url), ("uncached", uncached_url))
    }
    if hits["cached"] == 0 or hits["uncached"] != 0:
        raise RuntimeError(f"the instances did not run as labelled: cache hits {hits}")
    result: dict = {
        "threads": threads,
        "seconds": seconds,
        "rounds": rounds,
        "products": len(ids),
        "cache_hits": hits,
    }
    for name, name_runs in runs.items():
        result[name] = {
            "rps": statistics.median(run.rps for run in name_runs),
            "p50_ms": statistics.median(run.percentile(50) for run in name_runs),
            "p99_ms": statistics.median(run.percentile(99) for run in name_runs),
            "requests": sum(len(run.latencies) for run in name_runs),
            "non_2xx": sum(n for run in name_runs for status, n in run.statuses.items() if status >= 300),
        }
    result["ratio"] = result["cached"]["rps"] / result["uncached"]["rps"]
    return result


# -- the mixed load -----------------------------------------------------------------------------

# (weight, operation): a shopper's mix, mostly catalog reads.
MIX = (
    (30, "list"),
    (30, "detail"),
    (8, "categories"),
    (6, "reviews"),
    (6, "cart"),
    (6, "orders"),
    (4, "checkout"),
    (3, "quote"),
    (4, "missing"),
    (3, "unauthorised"),
)


def _operation(client: Client, rng: random.Random, ids: list[int], name: str) -> list[int]:
    """One step of the mix; the statuses of the requests it made."""
    if name == "list":
        query = f"?page={rng.randint(1, 5)}&sort={rng.choice(SORTS)}"
        return [client.request("GET", f"/api/products/{query}")[0]]
    if name == "detail":
        return [client.request("GET", f"/api/products/{rng.choice(ids)}/")[0]]
    if name == "categories":
        return [client.request("GET", "/api/categories/")[0]]
    if name == "reviews":
        return [client.request("GET", f"/api/products/{rng.choice(ids)}/reviews/")[0]]
    if name == "cart":
        return [client.request("GET", "/api/cart/")[0]]
    if name == "orders":
        return [client.request("GET", "/api/orders/")[0]]
    if name == "quote":
        return [client.request("GET", f"/api/shipping/quote/?to={rng.choice(QUOTE_ZONES)}")[0]]
    if name == "missing":
        return [client.request("GET", "/api/products/999999999/")[0]]
    if name == "unauthorised":
        token, client.token = client.token, None
        try:
            return [client.request("GET", "/api/users/me/")[0]]
        finally:
            client.token = token
    # checkout: a line in the cart, the order (with an Idempotency-Key), its payment
    statuses = []
    status, _ = client.request("POST", "/api/cart/items/", {"product_id": rng.choice(ids), "quantity": 1})
    statuses.append(status)
    status, order = client.json(
        "POST", "/api/orders/", {"shipping_address": "1 Report Street"}, Idempotency_Key=uuid.uuid4().hex
    )
    statuses.append(status)
    if status != 201:
        # A line sold out meanwhile: the cart stays as it was, so start the next one afresh.
        statuses.append(client.request("DELETE", "/api/cart/")[0])
    elif isinstance(order, dict):
        status, _ = client.json(
            "POST",
            f"/api/orders/{order['id']}/payments/",
            {"payment_method": "card", "token": "tok_visa"},
            Idempotency_Key=uuid.uuid4().hex,
        )
        statuses.append(status)
    return statuses


def mixed_load(base_url: str, *, seconds: float, threads: int = 6, think_seconds: float = 0.02) -> dict:
    """Shoppers (the seeded customers, logged in once each) running the mix for ``seconds``."""
    ids = product_ids(base_url, 200, in_stock=True)
    operations = [name for weight, name in MIX for _ in range(weight)]
    logged_in: set[int] = set()
    per_operation: Counter = Counter()

    def step(client: Client, rng: random.Random, run: Run, lock: threading.Lock) -> None:
        if id(client) not in logged_in:
            client.login(f"customer{rng.randint(1, 5)}")
            logged_in.add(id(client))
        name = rng.choice(operations)
        began = time.perf_counter()
        statuses = _operation(client, rng, ids, name)
        elapsed = time.perf_counter() - began
        with lock:
            run.latencies.append(elapsed)
            per_operation[name] += 1
            for status in statuses:
                run.statuses[status] += 1
        time.sleep(think_seconds)

    run = _timed_loop(base_url, threads, seconds, step)
    return {
        "seconds": run.seconds,
        "threads": threads,
        "operations": dict(per_operation),
        "statuses": {str(status): count for status, count in sorted(run.statuses.items())},
        "requests": sum(run.statuses.values()),
    }
