"""Observability for real: gunicorn's multiprocess metrics, JSON access logs, and every PromQL
expression of the Grafana dashboards and the alert rules run against a Prometheus that scrapes
the running stack.

The stack is ``scripts/stack.sh up`` (two gunicorn instances of two gevent workers each, nginx
in front, the Huey consumer, Prometheus from Debian's package) on ports of its own, with a
database of its own (the test database's name + ``_obs``) created, migrated, seeded and dropped
here, and ``scripts/stack.sh down`` at the end. Without the script (or without nginx or
Prometheus installed) the needed pieces are started here instead: one gunicorn instance of two
workers, the consumer and Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.engine import make_url

from ecommerce.config import TestingConfig
from ecommerce.extensions import db
from tests.helpers import drop_database, recreate_database
from tests.integration.servers import (
    BIN,
    HOST,
    PROJECT_ROOT,
    clean_env,
    free_port,
    gunicorn,
    run_cli,
    stop,
    wait_until,
)

STACK_SCRIPT = PROJECT_ROOT / "scripts" / "stack.sh"
ALERTS_FILE = PROJECT_ROOT / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((PROJECT_ROOT / "grafana" / "dashboards").glob("*.json"))
WORKERS_PER_INSTANCE = 2
DB_POOL_SIZE = 3
DB_MAX_OVERFLOW = 2
REQUESTS = 60
SEED_PRODUCTS = 20
# What the Grafana variables of the dashboards stand for when an expression is run directly.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "5m",
    "${instance}": ".*",
    "$instance": ".*",
}


@dataclass
class Stack:
    front_url: str  # where clients go (nginx, or the one instance)
    app_urls: list[str]  # each gunicorn instance, directly
    worker_metrics_url: str
    prometheus_url: str
    root: Path  # every log file is somewhere below
    multiproc_dir: Path  # the PROMETHEUS_MULTIPROC_DIR of the first instance
    customer: str = "customer1"
    password: str = "password123"

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.root.rglob("*.log")))


# -- starting and stopping ------------------------------------------------------------------


def _stack_tools_present() -> bool:
    return STACK_SCRIPT.exists() and all(shutil.which(tool) for tool in ("nginx", "prometheus"))


def _prometheus_config(path: Path, app_ports: list[int], worker_port: int, prometheus_port: int) -> None:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS_FILE)],
        "scrape_configs": [
            {
                "job_name": "ecommerce-api",
                "static_configs": [{"targets": [f"{HOST}:{p}" for p in app_ports]}],
            },
            {"job_name": "ecommerce-worker", "static_configs": [{"targets": [f"{HOST}:{worker_port}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"{HOST}:{prometheus_port}"]}]},
        ],
    }
    path.write_text(yaml.safe_dump(config))


def _start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("observability")
    test_db = make_url(TestingConfig.SQLALCHEMY_DATABASE_URI)
    database_url = test_db.set(database=f"{test_db.database}_obs").render_as_string(hide_password=False)
    env = clean_env(
        DATABASE_URL=database_url,
        REDIS_URL=TestingConfig.REDIS_URL,
        WEB_CONCURRENCY=str(WORKERS_PER_INSTANCE),
        DB_POOL_SIZE=str(DB_POOL_SIZE),
        DB_MAX_OVERFLOW=str(DB_MAX_OVERFLOW),
        LOG_LEVEL="info",
        LOG_JSON="true",
        INSTANCE_PATH=str(root / "instance"),
        SANDBOX_GATEWAY_PATH=str(root / "sandbox_gateway.db"),
        MAIL_FOLDER=str(root / "mail"),
        AUTH_RATE_LIMIT="1000/minute",
    )
    recreate_database(database_url)
    try:
        if _stack_tools_present():
            yield from _script_stack(root, env)
        else:
            run_cli(["db", "upgrade"], env)
            run_cli(["seed", "--products", str(SEED_PRODUCTS)], env)
            yield from _own_stack(root, env)
    finally:
        drop_database(database_url)


def _script_stack(root: Path, env: dict[str, str]) -> Iterator[Stack]:
    """``scripts/stack.sh up`` on free ports (not its defaults: a developer's stack may run),
    ``down`` at the end, whatever happened."""
    front, app1, app2, worker, prometheus = (free_port() for _ in range(5))
    stack_dir = root / "stack"
    env = {
        **env,
        "STACK_PORT": str(front),
        "STACK_APP_PORTS": f"{app1} {app2}",
        "STACK_WORKER_METRICS_PORT": str(worker),
        "STACK_PROMETHEUS_PORT": str(prometheus),
        "STACK_DIR": str(stack_dir),
        "STACK_SEED_PRODUCTS": str(SEED_PRODUCTS),
        "WORKERS": "2",
    }
    script = [str(STACK_SCRIPT)]
    try:
        up = subprocess.run(
            [*script, "up"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert up.returncode == 0, f"stack.sh up failed:\n{up.stdout}\n{up.stderr}"
        yield Stack(
            front_url=f"http://{HOST}:{front}",
            app_urls=[f"http://{HOST}:{app1}", f"http://{HOST}:{app2}"],
            worker_metrics_url=f"http://{HOST}:{worker}/metrics",
            prometheus_url=f"http://{HOST}:{prometheus}",
            root=stack_dir,
            multiproc_dir=stack_dir / "metrics" / "app1",
        )
    finally:
        down = subprocess.run(
            [*script, "down"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, f"stack.sh down failed:\n{down.stdout}\n{down.stderr}"


def _own_stack(root: Path, env: dict[str, str]) -> Iterator[Stack]:
    """One gunicorn instance (two workers), the consumer and Prometheus, all on free ports."""
    multiproc = root / "app1-metrics"
    multiproc.mkdir()
    worker_port, prometheus_port = free_port(), free_port()
    processes: list[subprocess.Popen] = []
    try:
        with gunicorn({**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, root / "app1.log") as app:
            processes.append(
                _start(
                    [str(BIN / "huey_consumer"), "ecommerce.worker.huey", "-k", "thread", "-w", "2"],
                    {**env, "WORKER_METRICS_PORT": str(worker_port)},
                    root / "worker.log",
                )
            )
            app_port = int(app.base_url.rsplit(":", 1)[1])
            config = root / "prometheus.yml"
            _prometheus_config(config, [app_port], worker_port, prometheus_port)
            if shutil.which("prometheus") is None:
                pytest.skip("Prometheus is not installed (apt-get install prometheus)")
            processes.append(
                _start(
                    [
                        "prometheus",
                        f"--config.file={config}",
                        f"--storage.tsdb.path={root / 'tsdb'}",
                        f"--web.listen-address={HOST}:{prometheus_port}",
                    ],
                    env,
                    root / "prometheus.log",
                )
            )
            stack = Stack(
                front_url=app.base_url,
                app_urls=[app.base_url],
                worker_metrics_url=f"http://{HOST}:{worker_port}/metrics",
                prometheus_url=f"http://{HOST}:{prometheus_port}",
                root=root,
                multiproc_dir=multiproc,
            )
            wait_until(lambda: _answers(stack.worker_metrics_url), 30, message="the worker's metrics")
            wait_until(lambda: _answers(stack.prometheus_url + "/-/ready"), 30, message="Prometheus")
            yield stack
    finally:
        for process in reversed(processes):
            stop(process, timeout=15)


# -- helpers ----------------------------------------------------------------------------------


def _samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples ``name{...}`` whose labels include ``labels``."""
    values = []
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            values.append(float(match.group(4)))
    return values


def _total(text: str, name: str, **labels: str) -> float:
    return sum(_samples(text, name, **labels))


def _per_worker_totals(directory: Path, name: str, labels: dict[str, str]) -> dict[str, float]:
    """``name{labels}`` summed in each worker's histogram file alone, by the file's name."""
    totals = {}
    for path in sorted(directory.glob("histogram_*.db")):
        alone = directory.parent / f"{directory.name}-{path.stem}"
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        totals[path.stem] = sum(
            sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )
    return totals


class Shopper:
    """One signed-in customer of the stack, talking HTTP."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        login = requests.post(
            base_url + "/api/auth/login/", json={"username": username, "password": password}, timeout=10
        )
        assert login.status_code == 200, login.text
        self.token = login.json()["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, expected: int, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        response = requests.request(method, self.base_url + path, **kwargs)
        assert response.status_code == expected, (method, path, response.status_code, response.text)
        return response

    def products_in_stock(self) -> list[dict]:
        return self.call("GET", "/api/products/", 200, params={"in_stock": "true", "page_size": 20}).json()

    def place_order(self, product_id: int, quantity: int = 1) -> dict:
        self.call("POST", "/api/cart/items/", 201, json={"product_id": product_id, "quantity": quantity})
        return self.call("POST", "/api/orders/", 201, json={}).json()

    def stock_conflict(self, product_id: int) -> None:
        self.call("POST", "/api/cart/items/", 201, json={"product_id": product_id, "quantity": 10_000})
        self.call("POST", "/api/orders/", 409, json={})
        self.call("DELETE", "/api/cart/", 204)

    def pay(self, order_id: int) -> dict:
        return self.call(
            "POST",
            f"/api/orders/{order_id}/payments/",
            202,
            json={"payment_method": "card", "token": "tok_ok"},
        ).json()

    def payment_status(self, payment_id: int) -> str:
        return self.call("GET", f"/api/payments/{payment_id}/", 200).json()["status"]


CLUSTER_ONLY_METRICS = frozenset(
    {"ecommerce_db_replica_lag_seconds", "ecommerce_db_replica_lag_bytes", "ecommerce_db_replicas_streaming"}
)


def _promql_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target and every alert rule, ready to run."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard.get("panels", []))
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))  # panels inside collapsed rows
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append(
                        (f"{path.name}: {panel.get('title')} [{target.get('refId')}]", target["expr"])
                    )
    for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def cluster_only(expr: str) -> bool:
    """Series that exist only with a Patroni cluster behind the app (replication lag): checked
    against a running cluster by tests/integration/test_failover.py, not on this stack's
    single database."""
    return bool(set(re.findall(r"ecommerce_[a-z_]+", expr)) & CLUSTER_ONLY_METRICS)


def cluster_expressions() -> list[str]:
    return [expr for _, expr in _promql_expressions() if cluster_only(expr)]


def _runnable(expr: str) -> str:
    """Grafana variables replaced; an alert's final threshold comparison dropped, so that the
    expression returns its value whether or not it is past the threshold."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return re.sub(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.eE+-]+\s*$", "", expr.strip())


def _query(prometheus_url: str, expr: str) -> dict:
    response = requests.get(prometheus_url + "/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]


# -- the tests --------------------------------------------------------------------------------


def test_multiprocess_metrics_sum_the_workers(stack):
    app_url = stack.app_urls[0]
    shopper = Shopper(app_url, stack.customer, stack.password)
    product_id = shopper.products_in_stock()[0]["id"]
    detail = f"/api/products/{product_id}/"
    endpoint = {"endpoint": "products.ProductByIdView", "method": "GET", "status": "200"}

    def scrape() -> str:
        response = requests.get(app_url + "/metrics", timeout=10)
        assert response.status_code == 200
        return response.text

    before = scrape()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(lambda _: requests.get(app_url + detail, timeout=20).status_code, range(REQUESTS))
        )
    assert statuses == [200] * REQUESTS
    order = shopper.place_order(product_id)
    shopper.stock_conflict(product_id)
    shopper.pay(order["id"])

    # Each worker counted the requests it served in files of its own (both served some)...
    per_worker = _per_worker_totals(
        stack.multiproc_dir, "ecommerce_http_request_duration_seconds_count", endpoint
    )
    assert len(per_worker) == WORKERS_PER_INSTANCE and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == REQUESTS + _total(
        before, "ecommerce_http_request_duration_seconds_count", **endpoint
    )
    # ...and whichever worker answers /metrics, it reports the sum over all of them.
    for _ in range(3 * WORKERS_PER_INSTANCE):
        text = scrape()
        counted = _total(text, "ecommerce_http_request_duration_seconds_count", **endpoint)
        assert (
            counted - _total(before, "ecommerce_http_request_duration_seconds_count", **endpoint) == REQUESTS
        )
        # The latency histogram by endpoint and status, with its buckets.
        assert _samples(text, "ecommerce_http_request_duration_seconds_bucket", le="+Inf", **endpoint)
        assert _total(text, "ecommerce_http_request_total", method="GET", status="200") >= REQUESTS
        # Business metrics.
        assert (
            _total(text, "ecommerce_orders_placed_total") - _total(before, "ecommerce_orders_placed_total")
            == 1
        )
        conflicts = _total(text, "ecommerce_stock_conflicts_total")
        assert conflicts - _total(before, "ecommerce_stock_conflicts_total") == 1
        assert _total(text, "ecommerce_payments_total", status="pending") >= 1
        # One look-up per detail request: the first (or the few racing it) missed, the rest hit.
        lookups = _total(text, "ecommerce_cache_requests_total", entity="product")
        assert lookups - _total(before, "ecommerce_cache_requests_total", entity="product") == REQUESTS
        assert _total(text, "ecommerce_cache_requests_total", entity="product", result="hit") >= REQUESTS / 2
        assert _samples(text, "ecommerce_cache_requests_total", entity="product", result="miss")
        # Served at scrape time, not from the workers' files: the queue.
        assert len(_samples(text, "ecommerce_queue_length")) == 1
        assert len(_samples(text, "ecommerce_queue_scheduled")) == 1
        # The pool gauges add the live workers up: each has a pool of DB_POOL_SIZE.
        assert _samples(text, "ecommerce_db_pool_size") == [WORKERS_PER_INSTANCE * DB_POOL_SIZE]
        assert _samples(text, "ecommerce_db_pool_capacity") == [
            WORKERS_PER_INSTANCE * (DB_POOL_SIZE + DB_MAX_OVERFLOW)
        ]
        assert (
            0
            <= _total(text, "ecommerce_db_pool_checked_out")
            <= WORKERS_PER_INSTANCE * (DB_POOL_SIZE + DB_MAX_OVERFLOW)
        )
    # Nothing a single process would add twice: one value per series.
    assert len(text.splitlines()) == len(set(text.splitlines()))


def test_access_log_is_json_with_the_request_fields(stack):
    shopper = Shopper(stack.front_url, stack.customer, stack.password)
    request_id = "obs-" + uuid.uuid4().hex
    me = shopper.call("GET", "/api/users/me/", 200, headers={"X-Request-ID": request_id})
    assert me.headers["X-Request-ID"] == request_id

    def logged() -> dict | None:
        for line in stack.logs().splitlines():
            if request_id in line and line.lstrip().startswith("{"):
                record = json.loads(line)
                if record.get("logger") == "ecommerce.access":
                    return record
        return None

    record = wait_until(logged, 10, message="the access log line")
    assert record["request_id"] == request_id
    assert record["route"] == "/api/users/me/"
    assert record["method"] == "GET" and record["status"] == 200
    assert isinstance(record["latency_ms"], int | float) and record["latency_ms"] >= 0
    assert str(record["user_id"]) == str(me.json()["id"])
    everything = stack.logs()
    assert shopper.token not in everything
    assert stack.password not in everything


def test_every_dashboard_and_alert_expression_returns_data(stack):
    expressions = _promql_expressions()
    assert len(expressions) >= 20, expressions

    def scraped_once() -> bool:
        targets = requests.get(stack.prometheus_url + "/api/v1/targets", timeout=5).json()["data"]
        active = targets["activeTargets"]
        return bool(active) and all(t["health"] == "up" and t["lastScrape"][:4] != "0001" for t in active)

    wait_until(scraped_once, 30, interval=0.5, message="Prometheus's first scrape of every target")
    rules = requests.get(stack.prometheus_url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    expected = {where.split(": ", 1)[1] for where, _ in expressions if where.startswith("alerts.yml")}
    assert expected <= loaded, (expected, loaded)

    # Traffic: cache misses and hits, an order, a stock conflict, a payment the worker charges
    # (its job, the order's move to paid and the confirmation email). Twice: a series that
    # appears with its first event has no rate yet (the first sample already holds it), so the
    # second round, once Prometheus has seen the first, is what the rates show.
    shopper = Shopper(stack.front_url, stack.customer, stack.password)
    products = shopper.products_in_stock()
    assert len(products) >= 6, products

    def shop(round_: int) -> None:
        for product in products[:5]:
            for _ in range(3):
                shopper.call("GET", f"/api/products/{product['id']}/", 200)
        order = shopper.place_order(products[1 + 2 * round_]["id"])
        shopper.stock_conflict(products[2 + 2 * round_]["id"])
        payment = shopper.pay(order["id"])
        wait_until(lambda: shopper.payment_status(payment["id"]) == "succeeded", 30, message="the payment")

    shop(0)
    seen = ["ecommerce_order_emails_total", 'ecommerce_payments_total{status="succeeded"}']
    wait_until(
        lambda: all(_query(stack.prometheus_url, name)["result"] for name in seen),
        30,
        interval=0.5,
        message="Prometheus to scrape the first round",
    )
    shop(1)

    # Every expression must return data, and at least one number (not NaN: 0/0 or a quantile of
    # no observations). Rates need two scrapes of the second round inside their window.
    runnable = [(where, _runnable(expr)) for where, expr in expressions if not cluster_only(expr)]
    assert len(runnable) < len(expressions)  # the cluster's own are left to the failover tests
    deadline = time.monotonic() + 45
    while True:
        # Traffic goes on while the rates are read: on a busy machine the second round may have
        # left the [1m] windows before the last expression is checked (seen: request rates 0/0).
        shopper.call("GET", f"/api/products/{products[0]['id']}/", 200)
        missing = []
        for where, expr in runnable:
            values = [sample["value"][1] for sample in _query(stack.prometheus_url, expr)["result"]]
            if not values or all(value == "NaN" for value in values):
                missing.append(f"{where}: {expr} -> {values}")
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, "expressions without data:\n" + "\n".join(missing)


def test_pool_gauges_follow_checkouts_and_checkins(app):
    def checked_out() -> float:
        return REGISTRY.get_sample_value("ecommerce_db_pool_checked_out")

    with app.app_context():
        before = checked_out()
        first, second = db.engine.connect(), db.engine.connect()
        assert checked_out() == before + 2
        first.close()
        assert checked_out() == before + 1
        second.invalidate()  # a connection dropped while checked out is given back too
        second.close()
        assert checked_out() == before
    assert REGISTRY.get_sample_value("ecommerce_db_pool_size") >= app.config["DB_POOL_SIZE"]


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS_FILE)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_uses_one_datasource_uid():
    datasources = yaml.safe_load(
        (PROJECT_ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    uid = source["uid"]
    providers = yaml.safe_load((PROJECT_ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARDS
    for path in DASHBOARDS:
        text = path.read_text()
        used = set(re.findall(r'"uid":\s*"([^"]+)"', text)) - {json.loads(text)["uid"], "-- Grafana --"}
        assert used == {uid}, (path.name, used)
