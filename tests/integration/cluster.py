"""A Patroni cluster of its own for the tests (scripts/patroni.sh on free ports), the app in
gunicorn against it, and a steady checkout load that records every answer."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import requests

from tests.integration.servers import PROJECT_ROOT, free_port

sys.path.insert(0, str(PROJECT_ROOT / "patroni"))
import cluster as patroni_rest  # noqa: E402  (patroni/cluster.py, standard library only)

SCRIPT = PROJECT_ROOT / "scripts" / "patroni.sh"
# Under the repository, not /tmp: the nodes run as the postgres user, who must reach the folder.
CLUSTER_DIR = PROJECT_ROOT / os.environ.get("TEST_PATRONI_DIR", "run/patroni-test")
BOOT_TIMEOUT = 180


def _free_pair() -> int:
    """A free port whose successor is free too (etcd's client and peer ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@dataclass
class Cluster:
    env: dict[str, str]
    pg_ports: list[int]
    rest_urls: list[str]
    database_url: str
    replica_url: str

    def script(self, *args: str, timeout: float = BOOT_TIMEOUT) -> str:
        result = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise AssertionError(f"patroni.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def members(self) -> list[dict]:
        return patroni_rest.members(self.rest_urls)

    def leader(self) -> dict:
        found = patroni_rest.leader(self.rest_urls)
        assert found is not None, "no leader"
        return found

    def wait_healthy(self, seconds: float = 120) -> list[dict]:
        return patroni_rest.wait_healthy(self.rest_urls, seconds)

    def connect(self, port: int):
        return psycopg2.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="ecommerce", connect_timeout=3
        )

    def primary(self, seconds: float = 30):
        """A connection to the primary. Just after a failover, a member's view of the cluster may
        still name the old leader for a moment (its leader key lives until its TTL): ask again
        until the named leader accepts a connection and is not in recovery."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                connection = self.connect(int(self.leader()["port"]))
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_is_in_recovery()")
                    in_recovery = cursor.fetchone()[0]
                connection.rollback()  # handed back outside a transaction (callers set autocommit)
                if not in_recovery:
                    return connection
                connection.close()
                problem = "the named leader is still in recovery"
            except (psycopg2.OperationalError, AssertionError) as error:
                problem = str(error)
            if time.monotonic() >= deadline:
                raise AssertionError(f"no primary accepted a connection within {seconds}s: {problem}")
            time.sleep(0.5)

    def pid_of(self, process: str) -> int:
        """The PID scripts/patroni.sh recorded for ``process`` (etcd, node1, ...)."""
        return int((CLUSTER_DIR / "pids" / f"{process}.pid").read_text().split()[0])

    def standby_ports(self) -> list[int]:
        return [int(m["port"]) for m in self.members() if m.get("role") != "leader"]


@contextmanager
def patroni_cluster() -> Iterator[Cluster]:
    pg_ports = [free_port() for _ in range(3)]
    rest_ports = [free_port() for _ in range(3)]
    etcd_port = _free_pair()
    env = {
        **os.environ,
        "PATRONI_DIR": str(CLUSTER_DIR),
        "PATRONI_PG_PORTS": " ".join(map(str, pg_ports)),
        "PATRONI_REST_PORTS": " ".join(map(str, rest_ports)),
        "PATRONI_ETCD_PORT": str(etcd_port),
        "PATRONI_SCOPE": "ecommerce-test",
    }
    hosts = ",".join(f"127.0.0.1:{port}" for port in pg_ports)
    cluster = Cluster(
        env=env,
        pg_ports=pg_ports,
        rest_urls=[f"http://127.0.0.1:{port}" for port in rest_ports],
        database_url=f"postgresql://postgres@{hosts}/ecommerce?target_session_attrs=read-write",
        replica_url=f"postgresql://postgres@{hosts}/ecommerce?target_session_attrs=prefer-standby&load_balance_hosts=random",
    )
    cluster.script("clean", timeout=120)  # what an interrupted earlier run left
    try:
        cluster.script("up")
        yield cluster
    finally:
        cluster.script("clean", timeout=180)


# -- the load ------------------------------------------------------------------------------


@dataclass
class Outcome:
    at: float
    status: int | str


@dataclass
class LoadRecord:
    created: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> order id (201)
    unresolved: list[str] = field(default_factory=list)  # keys that never got their 201
    write_ok: list[float] = field(default_factory=list)  # monotonic times of 201s
    write_errors: list[Outcome] = field(default_factory=list)
    read_ok: int = 0
    read_failures: list[Outcome] = field(default_factory=list)
    bad_refusals: list[str] = field(default_factory=list)  # a 503 without problem+json/Retry-After
    crashed_threads: list[str] = field(default_factory=list)  # what stopped a load thread
    lock: threading.Lock = field(default_factory=threading.Lock)


class CheckoutLoad:
    """Buyers that each put a product in their cart and check out, at a steady pace, retrying
    every refused write (503, a reset connection) with the same Idempotency-Key until it is
    answered; and readers of the catalog, whose every failure is recorded."""

    def __init__(self, base_url: str, tokens: list[str], product_ids: list[int], readers: int = 2) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.product_ids = product_ids
        self.readers = readers
        self.record = LoadRecord()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> CheckoutLoad:
        jobs = [(self._buyer, token) for token in self.tokens] + [(self._reader,)] * self.readers
        for job in jobs:
            self.threads.append(threading.Thread(target=self._guarded, args=job, daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)
        assert not any(thread.is_alive() for thread in self.threads), "a load thread hung"

    def _guarded(self, target, *args) -> None:
        """A load thread that fails says why (an exception in a thread would go unnoticed)."""
        try:
            target(*args)
        except BaseException as error:  # noqa: BLE001 - reported to the test, which fails on it
            with self.record.lock:
                self.record.crashed_threads.append(f"{type(error).__name__}: {error}")

    def wait_for_write_after(self, moment: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.record.lock:
                later = [t for t in self.record.write_ok if t > moment]
            if later:
                return min(later)
            time.sleep(0.1)
        raise AssertionError(f"no checkout succeeded within {timeout}s")

    def _write(
        self,
        http: requests.Session,
        method: str,
        path: str,
        payload: dict,
        headers: dict,
        ok: set[int],
        key: str | None = None,
        patience: float = 90,
    ) -> requests.Response | None:
        """Send until an answer in ``ok`` (or a non-retryable one); None if patience runs out."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if key is None and self.stop.is_set():
                return None
            try:
                response = http.request(
                    method, self.base_url + path, json=payload, headers=headers, timeout=15
                )
            except requests.RequestException as error:
                self._note_write_error(type(error).__name__)
                time.sleep(0.2)
                continue
            if response.status_code in ok:
                return response
            if response.status_code == 503 and not (
                response.headers.get("Retry-After", "").isdigit()
                and response.headers.get("Content-Type", "").startswith("application/problem+json")
            ):
                with self.record.lock:
                    self.record.bad_refusals.append(f"{path}: {response.headers} {response.text[:200]}")
            if response.status_code == 503 or (
                response.status_code == 409 and "still being processed" in response.text
            ):
                self._note_write_error(response.status_code)
                time.sleep(0.2)
                continue
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return None

    def _note_write_error(self, status: int | str) -> None:
        with self.record.lock:
            self.record.write_errors.append(Outcome(time.monotonic(), status))

    def _buyer(self, token: str) -> None:
        http = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random(token)
        while not self.stop.is_set():
            product_id = rng.choice(self.product_ids)
            added = self._write(
                http,
                "POST",
                "/api/cart/items/",
                {"product_id": product_id, "quantity": 1},
                headers,
                {200, 201},
            )
            if added is None:
                return
            key = uuid.uuid4().hex
            # Once sent, a checkout is retried with its key until answered, even after stop:
            # its outcome must be known.
            response = self._write(
                http, "POST", "/api/orders/", {}, {**headers, "Idempotency-Key": key}, {201}, key=key
            )
            with self.record.lock:
                if response is None:
                    self.record.unresolved.append(key)
                else:
                    self.record.created[key] = response.json()["id"]
                    self.record.write_ok.append(time.monotonic())
            time.sleep(0.05)

    def _reader(self) -> None:
        http = requests.Session()
        rng = random.Random()
        while not self.stop.is_set():
            path = rng.choice(
                [
                    f"/api/products/{rng.choice(self.product_ids)}/",
                    f"/api/products/?page={rng.randint(1, 5)}",
                    "/api/categories/",
                    f"/api/products/{rng.choice(self.product_ids)}/reviews/",
                ]
            )
            try:
                response = http.get(self.base_url + path, timeout=15)
                failed = None if response.status_code == 200 else f"{response.status_code} {path}"
            except requests.RequestException as error:
                failed = f"{type(error).__name__} {path}"
            with self.record.lock:
                if failed:
                    self.record.read_failures.append(Outcome(time.monotonic(), failed))
                else:
                    self.record.read_ok += 1
            time.sleep(0.02)


def write_figures(name: str, figures: dict) -> None:
    """Keep the measured figures beside the run (run/failover-figures.json) for the docs."""
    path = PROJECT_ROOT / "run" / "failover-figures.json"
    path.parent.mkdir(exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[name] = figures
    path.write_text(json.dumps(existing, indent=2) + "\n")
