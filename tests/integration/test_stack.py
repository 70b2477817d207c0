"""`make stack` for real: scripts/stack.sh starts nginx in front of two gunicorn + gevent
instances, a Huey consumer and Prometheus on 127.0.0.1, and stops exactly those.

The stack runs on free ports, in a STACK_DIR of its own, on a database of its own (the test
database's name + ``_stack``, dropped afterwards) and on the test Redis (``TEST_STACK_REDIS_URL``
to choose another) under key prefixes of its own. It is started once for the module; the tests
run in file order, the last ones restart the instances (``reload``), freeze and kill an instance,
and then stop the whole stack.

POSTs are never retried on a second instance: nginx.conf's ``proxy_next_upstream`` has no
``non_idempotent``, and ``test_a_post_that_reached_an_instance_is_not_retried`` shows it: with
app1 frozen (SIGSTOP), a POST sent to it ends in nginx's 504 and never reaches app2, while a GET
sent to it is answered by app2.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PIL import Image
from sqlalchemy.engine import make_url

from ecommerce.config import TestingConfig
from ecommerce.middleware import SECURITY_HEADERS, STOREFRONT_CSP
from tests.factories import PASSWORD
from tests.helpers import EventReader, drop_database
from tests.integration.servers import HOST, PROJECT_ROOT, clean_env, free_port, run_cli, wait_until

SCRIPT = PROJECT_ROOT / "scripts" / "stack.sh"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AUTH_LIMIT = 5  # AUTH_RATE_LIMIT of the stack: 5/minute
READ_TIMEOUT = 3  # nginx's proxy_read_timeout in this stack, seconds
HEARTBEAT = 4  # the app's keep-alive comment on idle event streams, seconds
HEX_ID = re.compile(r"^[0-9a-f]{32}$")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(NGINX) or shutil.which("apt-get")),
    reason="needs nginx, or apt-get to install it",
)


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    port: int
    app_ports: list[int]
    worker_port: int
    prometheus_port: int

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.post(self.url(path), **kwargs)

    def script(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SCRIPT), command],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pid(self, name: str) -> int:
        return int((self.dir / "pids" / f"{name}.pid").read_text().split()[0])

    def pid_names(self) -> list[str]:
        return sorted(path.stem for path in (self.dir / "pids").glob("*.pid"))

    def access_log(self, request_id: str) -> dict:
        """nginx's access-log entry of the request with this id: written unbuffered, but only
        once the response has gone, so it may lag the response by a moment."""

        def entry() -> dict | None:
            for line in (self.dir / "logs" / "nginx-access.log").read_text().splitlines():
                logged = json.loads(line)
                if logged["request_id"] == request_id:
                    return logged
            return None

        return wait_until(entry, 5, interval=0.05, message=f"the access-log entry of {request_id}")

    def app_log(self, name: str) -> str:
        return (self.dir / "logs" / f"{name}.log").read_text(errors="replace")


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def nginx_processes(master: int) -> set[int]:
    """nginx's master and its worker processes (not the cache loader, which exits on its own a
    minute after the start): the same set before and after means nginx was not reloaded."""
    workers = set()
    for pid in group_members(master):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"worker process" in title:
            workers.add(pid)
    return {master, *workers}


def assert_nginx_accepts(config: Path, prefix: Path) -> None:
    """``nginx -t`` passes on ``config``, its relative paths under ``prefix``."""
    check = subprocess.run(
        [NGINX, "-t", "-c", str(config), "-p", f"{prefix}/", "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert check.returncode == 0, check.stderr


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="module")
def stack(app, tmp_path_factory):
    test_db = make_url(TestingConfig.SQLALCHEMY_DATABASE_URI)
    database_url = test_db.set(database=f"{test_db.database}_stack").render_as_string(hide_password=False)
    drop_database(database_url)
    port, app1, app2, worker, prometheus = distinct_free_ports(5)
    stack_dir = tmp_path_factory.mktemp("stack")
    env = clean_env(
        STACK_DIR=str(stack_dir),
        STACK_PORT=str(port),
        STACK_APP_PORTS=f"{app1} {app2}",
        STACK_WORKER_METRICS_PORT=str(worker),
        STACK_PROMETHEUS_PORT=str(prometheus),
        STACK_SEED_PRODUCTS="60",
        STACK_PROXY_READ_TIMEOUT=str(READ_TIMEOUT),
        DATABASE_URL=database_url,
        REDIS_URL=os.environ.get("TEST_STACK_REDIS_URL") or TestingConfig.REDIS_URL,
        CACHE_KEY_PREFIX="ecommerce-stack-test:",
        RATELIMIT_KEY_PREFIX="ecommerce-stack-test-rl",
        HUEY_NAME="ecommerce-stack-test",
        AUTH_RATE_LIMIT=f"{AUTH_LIMIT}/minute",
        # No WEB_CONCURRENCY: the stack sizes the instances' workers itself (tested below).
        # Above nginx's proxy_read_timeout of this stack (READ_TIMEOUT): an idle stream outlives
        # it only through the events location's own timeout.
        EVENTS_HEARTBEAT_SECONDS=str(HEARTBEAT),
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="8192",
        LOG_LEVEL="info",
        LOG_JSON="true",
    )
    for name in ("SECRET_KEY", "JWT_SECRET_KEY", "MAIL_SERVER", "SANDBOX_GATEWAY_PATH", "MAIL_FOLDER"):
        env.pop(name, None)
    running = Stack(stack_dir, env, port, [app1, app2], worker, prometheus)
    try:
        # A first run may install nginx and prometheus with apt-get first.
        started = running.script("up", timeout=120 if os.path.exists(NGINX) else 600)
        assert started.returncode == 0, f"stack.sh up failed:\n{started.stdout}\n{started.stderr}"
        yield running
    finally:
        leaders = []
        for name in running.pid_names():
            try:
                leaders.append(running.pid(name))
            except (OSError, ValueError):
                pass
        stopped = running.script("down", timeout=90)
        # Whatever `down` left of the stack (a failed test must not leave servers behind).
        for pgid in leaders:
            if group_members(pgid):
                os.killpg(pgid, signal.SIGKILL)
        drop_database(database_url)
        assert stopped.returncode == 0, f"stack.sh down failed:\n{stopped.stdout}\n{stopped.stderr}"


def test_up_starts_every_process_and_status_lists_them(stack):
    assert stack.pid_names() == ["app1", "app2", "nginx", "prometheus", "worker"]
    status = stack.script("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("nginx", "app1", "app2", "worker", "prometheus"):
        assert re.search(rf"^{name}\s+{stack.pid(name)}\s+running\s", status.stdout, re.M), status.stdout
    # Each process leads a process group of its own: its workers can be stopped with it.
    for name in ("nginx", "app1", "app2"):
        assert len(group_members(stack.pid(name))) >= 2, name  # master and worker(s)


def test_the_instances_share_the_cores_one_worker_per_core_in_all(stack):
    """gunicorn.conf.py alone would give each instance a worker per core: two instances on one
    machine would run twice as many workers as it has cores."""
    cores = len(os.sched_getaffinity(0))
    workers = max(1, cores // 2)
    saved = [
        entry
        for entry in (stack.dir / "env").read_bytes().split(b"\0")
        if entry.startswith(b"WEB_CONCURRENCY=")
    ]
    assert saved == [f"WEB_CONCURRENCY={workers}".encode()]  # `reload` starts its successors alike
    for name in ("app1", "app2"):
        # The gunicorn master and its workers share the process group the script started; the
        # master forks its workers one after another, and `up` waits for one to answer.
        pgid = stack.pid(name)
        wait_until(lambda pgid=pgid: len(group_members(pgid)) >= 1 + workers, 10, message=f"{name}'s workers")
        assert len(group_members(pgid)) == 1 + workers, name


def test_nginx_config_is_valid_as_shipped_and_as_rendered(stack, tmp_path):
    rendered = stack.dir / "nginx.conf"
    assert_nginx_accepts(rendered, stack.dir)
    (tmp_path / "logs").mkdir()
    assert_nginx_accepts(PROJECT_ROOT / "nginx.conf", tmp_path)

    text = rendered.read_text()
    assert f"listen 127.0.0.1:{stack.port};" in text
    for port in stack.app_ports:
        assert re.search(rf"server 127\.0\.0\.1:{port} max_fails=\d+ fail_timeout=\d+s;", text)
    assert "least_conn;" in text and re.search(r"^\s*keepalive \d+;", text, re.M)
    # Reload's groups: one per instance, with every other instance and not that one.
    for number, port in enumerate(stack.app_ports, start=1):
        group = re.search(rf"upstream ecommerce_without_app{number} {{(.*?)}}", text, re.S)
        assert group, number
        servers = re.findall(r"server 127\.0\.0\.1:(\d+) ", group[1])
        assert servers == [str(p) for p in stack.app_ports if p != port], group[1]
        assert f"if (-f {stack.dir}/drain/app{number}) {{ set $pool ecommerce_without_app{number}; }}" in text
    # A POST that reached an instance is never sent to another one.
    directives = re.findall(r"^\s*proxy_next_upstream\s+([^;]*);", text, re.M)
    assert directives == ["error timeout http_502 http_503"], directives
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert "non_idempotent" not in code

    if os.path.exists(PROMTOOL):
        for config in (PROJECT_ROOT / "prometheus.yml", stack.dir / "prometheus.yml"):
            promtool = subprocess.run(
                [PROMTOOL, "check", "config", str(config)],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert promtool.returncode == 0, promtool.stdout + promtool.stderr


@pytest.mark.parametrize("ports", ["9101", "9101 9102 9103"])
def test_rendering_for_one_or_three_instances_in_a_folder_named_app1(ports, tmp_path):
    """The renderer alone (no stack): one drain switch and one group less that instance per
    instance, and none of either for a single instance (it has nothing to fall back on); the
    drain files' folder is written as it is, even when its path holds "app1"."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed yet (the stack fixture installs it)")
    folder = tmp_path / "myapp1"
    (folder / "logs").mkdir(parents=True)
    script = SCRIPT.read_text()
    render = script[script.index("render() {") : script.index("\n}\n", script.index("render() {")) + 3]
    variables = {
        "ROOT": str(PROJECT_ROOT),
        "STACK_APP_PORTS": ports,
        "STACK_PORT": "9100",
        "STACK_WORKER_METRICS_PORT": "9199",
        "STACK_PROMETHEUS_PORT": "9198",
        "STACK_PROXY_READ_TIMEOUT": "35",
        "MEDIA_ROOT": str(folder / "media"),
        "DRAIN_DIR": str(folder / "drain"),
    }
    rendered = folder / "nginx.conf"
    subprocess.run(
        [
            "bash",
            "-c",
            f'{render}\nrender "$1" "$2"',
            "render",
            str(PROJECT_ROOT / "nginx.conf"),
            str(rendered),
        ],
        env={**os.environ, **variables},
        check=True,
        timeout=20,
    )
    text = rendered.read_text()
    numbers = range(1, len(ports.split()) + 1) if " " in ports else range(0)
    switches = re.findall(r"if \(-f (\S+)\) \{ set \$pool (\S+); \}", text)
    assert switches == [(f"{folder}/drain/app{n}", f"ecommerce_without_app{n}") for n in numbers]
    assert re.findall(r"upstream (ecommerce\S*) \{", text) == ["ecommerce"] + [
        f"ecommerce_without_app{n}" for n in numbers
    ]
    assert_nginx_accepts(rendered, folder)


def test_both_instances_answer_through_nginx(stack):
    responses = [stack.get("/api/products/", params={"page_size": 5}) for _ in range(20)]
    assert [r.status_code for r in responses] == [200] * 20
    assert {r.headers["X-Upstream"] for r in responses} == {"app1", "app2"}
    # The app builds its links from the Host nginx passed on, port included.
    assert f"<http://{HOST}:{stack.port}/api/products/?" in responses[0].headers["Link"]


def test_request_id_is_echoed_or_made_and_logged_by_both(stack):
    sent = stack.get(
        "/api/products/", headers={"X-Request-ID": "stack-test-0001", "X-Forwarded-For": "203.0.113.9"}
    )
    assert sent.status_code == 200
    assert sent.headers["X-Request-ID"] == "stack-test-0001"
    entry = stack.access_log("stack-test-0001")
    assert entry["upstream"] == sent.headers["X-Upstream"] and entry["status"] == 200
    # The app trusts exactly one hop: the client's own X-Forwarded-For is not believed.
    app_line = next(
        json.loads(line)
        for line in stack.app_log(sent.headers["X-Upstream"]).splitlines()
        if "stack-test-0001" in line and line.startswith("{")
    )
    assert app_line["remote_addr"] == "127.0.0.1"

    made = stack.get("/api/products/")
    assert HEX_ID.match(made.headers["X-Request-ID"]), made.headers
    assert stack.access_log(made.headers["X-Request-ID"])["status"] == 200


def test_metrics_are_not_published_but_each_instance_serves_them(stack):
    for path in ("/metrics", "/metrics/", "/%6detrics"):
        hidden = stack.get(path)
        assert hidden.status_code == 404, path
        assert hidden.headers["Content-Type"] == "application/problem+json"
        assert hidden.json()["status"] == 404
    for port in [*stack.app_ports, stack.worker_port]:
        direct = requests.get(f"http://{HOST}:{port}/metrics", timeout=10)
        assert direct.status_code == 200, port
        assert "# TYPE" in direct.text


def test_prometheus_scrapes_every_instance_and_the_worker(stack):
    base = f"http://{HOST}:{stack.prometheus_port}"
    assert requests.get(f"{base}/-/ready", timeout=5).status_code == 200
    wanted = {f"{HOST}:{port}" for port in [*stack.app_ports, stack.worker_port]}

    def all_up():
        targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        up = {t["labels"]["instance"] for t in targets if t["health"] == "up"}
        return wanted <= up

    wait_until(all_up, 30, interval=0.5, message="Prometheus to scrape the instances and the worker")


def test_json_lists_are_gzipped_and_etags_still_match(stack):
    listing = stack.get("/api/products/", params={"page_size": 50}, headers={"Accept-Encoding": "gzip"})
    assert listing.status_code == 200
    assert listing.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in listing.headers["Vary"]
    assert len(listing.json()) == 50  # requests decompressed it
    # gzip makes nginx weaken the ETag; the app still recognises it.
    etag = listing.headers["ETag"]
    assert etag.startswith('W/"')
    again = stack.get(
        "/api/products/",
        params={"page_size": 50},
        headers={"Accept-Encoding": "gzip", "If-None-Match": etag},
    )
    assert again.status_code == 304


def test_swagger_ui_assets_are_cached(stack):
    first = stack.get("/api/docs/assets/swagger-ui.css")
    second = stack.get("/api/docs/assets/swagger-ui.css")
    assert first.status_code == second.status_code == 200
    assert second.headers["X-Cache-Status"] == "HIT"
    assert second.headers["X-Upstream"] == "nginx"
    assert "max-age=86400" in second.headers["Cache-Control"] and second.headers["Expires"]
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_nginx_serves_the_storefront_itself(stack):
    page = stack.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Upstream"] == "nginx"  # no instance touched
    assert page.headers["Cache-Control"] == "no-cache"
    # The same policy and security headers as the app sends with the storefront on `make run`.
    assert page.headers["Content-Security-Policy"] == STOREFRONT_CSP
    for name, value in SECURITY_HEADERS.items():
        assert page.headers.get(name) == value, name
    scripts = re.findall(r'src="(/assets/[^"]+)"', page.text)
    assert scripts, page.text[:500]
    asset = stack.get(scripts[0])
    assert asset.status_code == 200 and asset.headers["X-Upstream"] == "nginx"
    assert "javascript" in asset.headers["Content-Type"]
    assert "max-age=300" in asset.headers["Cache-Control"]
    assert asset.headers["Content-Security-Policy"] == STOREFRONT_CSP
    for name, value in SECURITY_HEADERS.items():
        assert asset.headers.get(name) == value, name
    missing = stack.get("/assets/no-such-file.js")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/problem+json"


def test_nginx_serves_product_pictures_itself_and_takes_uploads_up_to_10mb(stack):
    product = stack.get("/api/products/", params={"page_size": 1}).json()[0]
    assert product["images"], "flask seed gives the demo catalog pictures"
    image = product["images"][0]
    for url, size in ((image["url"], "width"), (image["thumbnail_url"], "thumbnail_width")):
        picture = stack.get(url, headers={"X-Request-ID": f"picture-{size}"})
        assert picture.status_code == 200, picture.text[:200]
        assert picture.headers["X-Upstream"] == "nginx"  # no instance touched
        assert picture.headers["Content-Type"] == "image/jpeg"
        assert picture.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert picture.headers["X-Content-Type-Options"] == "nosniff"
        assert Image.open(io.BytesIO(picture.content)).width == image[size]
        assert stack.access_log(f"picture-{size}")["upstream"] == "nginx"
    for name in ("app1", "app2"):
        assert image["url"] not in stack.app_log(name)
    for answer in (
        stack.get("/media/00/no-such-picture.jpg"),
        stack.get("/media/"),  # a folder: no listing, no HTML page
        stack.post(image["url"], data=b"x"),  # a method a file does not take
    ):
        assert answer.status_code == 404 and answer.headers["Content-Type"] == "application/problem+json"

    # An upload above nginx's general 1 MB limit but within the pictures' 10 MB goes through.
    run_cli(
        [
            "users",
            "create-admin",
            "--username",
            "media-admin",
            "--email",
            "media-admin@example.com",
            "--password",
            PASSWORD,
        ],
        clean_env(DATABASE_URL=stack.env["DATABASE_URL"], REDIS_URL=stack.env["REDIS_URL"]),
    )
    login = requests.post(
        f"http://{HOST}:{stack.app_ports[0]}/api/auth/login/",
        json={"username": "media-admin", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.9"},  # the login limits belong to other tests
        timeout=10,
    )
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    buffer = io.BytesIO()
    Image.effect_noise((1600, 1200), 80).convert("RGB").save(buffer, "JPEG", quality=98)
    photo = buffer.getvalue() + b"\0" * max(0, 2_000_000 - len(buffer.getvalue()))
    assert len(photo) > 1024 * 1024
    path = f"/api/products/{product['id']}/images/"
    uploaded = stack.post(path, files={"file": ("photo.jpg", photo, "image/jpeg")}, headers=admin, timeout=30)
    assert uploaded.status_code == 201, uploaded.text
    served = stack.get(uploaded.json()["url"])
    assert served.status_code == 200 and served.headers["X-Upstream"] == "nginx"
    shown = stack.get(f"/api/products/{product['id']}/").json()["images"]
    assert uploaded.json()["id"] in [i["id"] for i in shown]  # the cached detail was purged

    too_big = stack.post(
        path, files={"file": ("big.jpg", photo * 6, "image/jpeg")}, headers=admin, timeout=30
    )
    assert too_big.status_code == 413
    assert too_big.headers["Content-Type"] == "application/problem+json"
    assert too_big.headers["X-Upstream"] == "nginx"


def _stream(url: str, headers: dict | None = None) -> tuple[requests.Response, EventReader]:
    response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, 30))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response, EventReader(response.iter_content(chunk_size=None))


def test_live_events_cross_the_instances_and_the_worker_through_nginx(stack):
    """An order stream on app1 sees the worker's payment and a status change made on app2; a
    product stream through nginx sees the checkout's stock move; an idle stream outlives nginx's
    ordinary read timeout on keep-alive comments."""
    app1, app2 = (f"http://{HOST}:{port}" for port in stack.app_ports)
    # Logins straight to an instance as another client address (the instances trust one proxy
    # hop): the login limits of this stack belong to the rate-limit tests that follow.
    client_ip = {"X-Forwarded-For": "198.51.100.7"}
    run_cli(
        [
            "users",
            "create-admin",
            "--username",
            "stack-admin",
            "--email",
            "stack-admin@example.com",
            "--password",
            PASSWORD,
        ],
        clean_env(DATABASE_URL=stack.env["DATABASE_URL"], REDIS_URL=stack.env["REDIS_URL"]),
    )
    body = {"username": "stack-shopper", "email": "stack-shopper@example.com", "password": PASSWORD}
    assert (
        requests.post(f"{app1}/api/auth/register/", json=body, headers=client_ip, timeout=10).status_code
        == 201
    )

    def token(username: str) -> dict[str, str]:
        answer = requests.post(
            f"{app2}/api/auth/login/",
            json={"username": username, "password": PASSWORD},
            headers=client_ip,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    shopper, admin = token("stack-shopper"), token("stack-admin")
    product = stack.get("/api/products/?in_stock=true&page_size=1").json()[0]

    stock_response, stock = _stream(stack.url(f"/api/products/{product['id']}/events/"))
    try:
        assert stock.next()["data"] == {
            "product_id": product["id"],
            "stock_quantity": product["stock_quantity"],
        }
        added = stack.post(
            "/api/cart/items/", json={"product_id": product["id"], "quantity": 1}, headers=shopper
        )
        assert added.status_code == 201, added.text
        order = stack.post("/api/orders/", headers=shopper)
        assert order.status_code == 201, order.text
        moved = stock.next(timeout=5)
        assert moved["data"]["stock_quantity"] == product["stock_quantity"] - 1

        started = time.monotonic()
        assert stock.next(timeout=HEARTBEAT + 3, comments=True) == {"comment": "keep-alive"}
        assert time.monotonic() - started > READ_TIMEOUT  # idle past nginx's ordinary timeout
    finally:
        stock.close()
        stock_response.close()

    order_id = order.json()["id"]
    order_response, events = _stream(f"{app1}/api/orders/{order_id}/events/", shopper)
    try:
        assert events.next()["data"]["order_status"] == "pending"
        paying = stack.post(
            f"/api/orders/{order_id}/payments/",
            json={"payment_method": "card", "token": "tok_stack"},
            headers=shopper,
        )
        assert paying.status_code == 202, paying.text
        asked = events.next(timeout=5)
        assert asked["data"]["payment_status"] == "pending"
        paid = events.next(timeout=15)  # charged by the worker process
        assert (paid["data"]["order_status"], paid["data"]["payment_status"]) == ("paid", "succeeded")
        shipped = requests.patch(
            f"{app2}/api/orders/{order_id}/", json={"order_status": "shipped"}, headers=admin, timeout=10
        )
        assert shipped.status_code == 200, shipped.text
        last = events.next(timeout=5)
        assert last["data"]["order_status"] == "shipped" and last["id"] > paid["id"] > asked["id"]
    finally:
        events.close()
        order_response.close()


def test_login_rate_limit_is_shared_by_the_instances(stack):
    body = {"username": "stack-nobody", "password": "wrong-password"}
    attempts = [stack.post("/api/auth/login/", json=body) for _ in range(AUTH_LIMIT)]
    assert [r.status_code for r in attempts] == [401] * AUTH_LIMIT
    assert {r.headers["X-Upstream"] for r in attempts} == {"app1", "app2"}
    limited = stack.post("/api/auth/login/", json=body)
    assert limited.status_code == 429
    assert limited.headers["X-Upstream"] in {"app1", "app2"}  # the app's limit, not nginx's
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0


def test_nginx_limits_bursts_on_auth_with_a_problem(stack):
    body = {"username": "stack-burst", "password": "wrong-password"}
    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(lambda _: stack.post("/api/auth/login/", json=body, timeout=20), range(40)))
    by_nginx = [r for r in responses if r.status_code == 429 and r.headers["X-Upstream"] == "nginx"]
    assert by_nginx, [(r.status_code, r.headers.get("X-Upstream")) for r in responses]
    problem = by_nginx[0]
    assert problem.headers["Content-Type"] == "application/problem+json"
    assert problem.json()["status"] == 429 and problem.headers["Retry-After"]
    assert HEX_ID.match(problem.headers["X-Request-ID"])
    assert {r.status_code for r in responses} <= {401, 429}


def test_requests_too_large_for_nginx_or_gunicorn_get_problems(stack):
    """Whichever of nginx and gunicorn refuses a request line or header, the client gets a
    problem: a 5,000-character query string passes nginx and is refused by gunicorn (414), a
    10,000-character one by nginx (414), an 8 KB cookie by nginx (431)."""
    for response, status in (
        (stack.get("/api/products/", params={"q": "a" * 5000}), 414),
        (stack.get("/api/products/", params={"q": "a" * 10000}), 414),
        (stack.get("/healthz", headers={"Cookie": "session=" + "b" * 8192}), 431),
    ):
        assert response.status_code == status, (status, response.text[:300])
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status and problem["detail"], problem
        assert "<html>" not in response.text
    assert stack.get("/api/products/", params={"q": "a" * 300}).status_code == 422


def test_a_drain_file_takes_an_instance_out_of_nginx_choice_at_once(stack):
    """The switch `reload` uses: with STACK_DIR/drain/app1 there, the next requests all go to
    app2, with no nginx reload; without it, to both again. `status` names the drained one."""
    drain = stack.dir / "drain" / "app1"
    nginx_workers = nginx_processes(stack.pid("nginx"))
    drain.touch()
    try:
        drained = [stack.get("/api/products/", params={"page_size": 5}) for _ in range(20)]
        status = stack.script("status")
    finally:
        drain.unlink()
    assert [r.status_code for r in drained] == [200] * 20
    assert {r.headers["X-Upstream"] for r in drained} == {"app2"}
    assert re.search(r"^app1\s.*out of nginx's choice", status.stdout, re.M), status.stdout
    assert not re.search(r"^app2\s.*out of nginx's choice", status.stdout, re.M), status.stdout
    back = [stack.get("/api/products/", params={"page_size": 5}) for _ in range(20)]
    assert {r.headers["X-Upstream"] for r in back} == {"app1", "app2"}
    assert nginx_processes(stack.pid("nginx")) == nginx_workers  # nginx was not reloaded


def test_reload_restarts_each_instance_without_failing_a_request(stack):
    """`scripts/stack.sh reload` while clients read and buy through nginx: every request is
    answered (no 5xx, no connection error), every cart add answered is in the cart exactly
    once, nginx never sends a request to an instance that is out (no request tried twice), and
    afterwards both instances and the worker are new processes that `status` lists and that
    serve. Half the clients open a connection per request, half keep one open (a
    requests.Session, which does not retry): nginx itself is never reloaded (the same worker
    processes before and after), so no idle keep-alive connection of a client is closed under
    it (docs/deployment.md)."""
    app1 = f"http://{HOST}:{stack.app_ports[0]}"
    client_ip = {"X-Forwarded-For": "198.51.100.21"}  # the login limits belong to other tests
    buyers = []
    for n in range(2):
        username = f"reload-buyer-{n}"
        body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
        registered = requests.post(f"{app1}/api/auth/register/", json=body, headers=client_ip, timeout=10)
        assert registered.status_code == 201, registered.text
        login = requests.post(
            f"{app1}/api/auth/login/",
            json={"username": username, "password": PASSWORD},
            headers=client_ip,
            timeout=10,
        )
        assert login.status_code == 200, login.text
        buyers.append({"Authorization": f"Bearer {login.json()['access_token']}"})
    names = ("app1", "app2", "worker")
    before = {name: stack.pid(name) for name in names}
    nginx_before = nginx_processes(stack.pid("nginx"))

    stop = threading.Event()
    results: list[tuple[str, str, int | str, str | None, float]] = []  # method, id, status, upstream, when

    def client(number: int) -> None:
        # 0-2 read, 3-4 buy; 1 and 4 keep their connection open between requests.
        headers = buyers[number - 3] if number >= 3 else {}
        session = requests.Session() if number in (1, 4) else requests
        sent = 0
        while not stop.is_set():
            sent += 1
            request_id = f"reload-{number}-{sent}"
            try:
                if number >= 3:
                    answer = session.post(
                        stack.url("/api/cart/items/"),
                        json={"product_id": sent % 60 + 1, "quantity": 1},
                        headers={**headers, "X-Request-ID": request_id},
                        timeout=10,
                    )
                else:
                    path = f"/api/products/{sent % 60 + 1}/" if sent % 2 else "/api/categories/"
                    answer = session.get(stack.url(path), headers={"X-Request-ID": request_id}, timeout=10)
                outcome = (answer.status_code, answer.headers.get("X-Upstream"))
            except requests.RequestException as error:
                outcome = (repr(error), None)
            results.append(("POST" if number >= 3 else "GET", request_id, *outcome, time.monotonic()))
            time.sleep(0.02)

    clients = [threading.Thread(target=client, args=(number,)) for number in range(5)]  # 3 read, 2 buy
    for thread in clients:
        thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        reload = stack.script("reload", timeout=150)
        finished = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert reload.returncode == 0, reload.stdout + reload.stderr

    failed = [r for r in results if r[2] not in (200, 201)]
    assert not failed, failed[:10]
    during = [r for r in results if started < r[4] < finished]
    assert sum(r[0] == "GET" for r in during) > 100 and sum(r[0] == "POST" for r in during) > 50, len(during)
    added = sum(r[0] == "POST" for r in results)
    in_carts = 0
    for headers in buyers:
        cart = stack.get("/api/cart/", headers=headers)
        assert cart.status_code == 200, cart.text
        in_carts += sum(item["quantity"] for item in cart.json()["items"])
    assert in_carts == added  # each add answered 200/201 was done once, none was lost
    # Each request went to one instance, at once: none was sent to an instance that was out.
    ours = {r[1] for r in results}
    access_log = stack.dir / "logs" / "nginx-access.log"

    def logged() -> dict[str, str] | None:
        entries = (json.loads(line) for line in access_log.read_text().splitlines())
        tried = {e["request_id"]: e["upstream_addr"] for e in entries if e["request_id"] in ours}
        return tried if len(tried) == len(ours) else None

    tried = wait_until(logged, 5, interval=0.2, message="the access-log entries of the clients")
    assert not {i: addr for i, addr in tried.items() if "," in addr}

    after = {name: stack.pid(name) for name in names}
    for name in names:
        assert after[name] != before[name], name
        assert not group_members(before[name]), f"the old {name} still runs"
    status = stack.script("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in (*names, "nginx", "prometheus"):
        assert re.search(rf"^{name}\s+{stack.pid(name)}\s+running\s", status.stdout, re.M), status.stdout
    served = [stack.get("/api/products/", params={"page_size": 5}) for _ in range(10)]
    assert [r.status_code for r in served] == [200] * 10
    assert {r.headers["X-Upstream"] for r in served} == {"app1", "app2"}
    assert not list((stack.dir / "drain").iterdir())  # every instance back in nginx's choice
    assert nginx_processes(stack.pid("nginx")) == nginx_before  # nginx was not reloaded
    for port in stack.app_ports:
        assert requests.get(f"http://{HOST}:{port}/readyz", timeout=5).status_code == 200
    assert requests.get(f"http://{HOST}:{stack.worker_port}/metrics", timeout=5).status_code == 200


def test_a_post_that_reached_an_instance_is_not_retried(stack):
    """app1 frozen: a POST that nginx sent to it times out (504) and is not sent to app2; a GET
    sent to it is tried again on app2 and answered."""
    app1, app2 = (f"{HOST}:{port}" for port in stack.app_ports)
    frozen = stack.pid("app1")
    os.killpg(frozen, signal.SIGSTOP)
    try:
        timed_out = None
        for attempt in range(4):  # ties are broken round-robin: one of the first two goes to app1
            request_id = f"stack-post-{attempt}"
            answer = stack.post(
                "/api/cart/items/",
                json={"product_id": 1, "quantity": 1},
                headers={"X-Request-ID": request_id},
                timeout=READ_TIMEOUT + 10,
            )
            if answer.status_code == 504:
                timed_out = answer
                break
            assert answer.status_code == 401 and answer.headers["X-Upstream"] == "app2"
        assert timed_out is not None, "no POST went to the frozen instance"
        assert timed_out.headers["Content-Type"] == "application/problem+json"
        entry = stack.access_log(timed_out.headers["X-Request-ID"])
        assert entry["upstream_addr"] == app1, entry  # tried once, on app1 only
        assert timed_out.headers["X-Request-ID"] not in stack.app_log("app2")

        retried = []
        for attempt in range(4):
            request_id = f"stack-get-{attempt}"
            answer = stack.get(
                "/api/products/", headers={"X-Request-ID": request_id}, timeout=READ_TIMEOUT + 10
            )
            assert answer.status_code == 200 and answer.headers["X-Upstream"] == "app2"
            if stack.access_log(request_id)["upstream_addr"] == f"{app1}, {app2}":
                retried.append(request_id)
                break
        assert retried, "no GET went to the frozen instance"
    finally:
        os.killpg(frozen, signal.SIGCONT)


def test_one_instance_killed_the_other_serves_everything(stack):
    victim = stack.pid("app1")
    os.killpg(victim, signal.SIGKILL)  # the gunicorn master and its workers
    wait_until(lambda: not group_members(victim), 10, message="app1 to die")
    with requests.Session() as session:
        responses = [session.get(stack.url(f"/api/products/{n % 60 + 1}/"), timeout=10) for n in range(100)]
    assert [r.status_code for r in responses] == [200] * 100
    assert {r.headers["X-Upstream"] for r in responses} == {"app2"}


def test_down_stops_the_stack_and_nothing_else(stack):
    # A bystander whose command line names every program of the stack.
    bystander = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            "gunicorn",
            "nginx",
            "prometheus",
            "huey_consumer",
        ]
    )
    try:
        members = {pid for name in stack.pid_names() for pid in group_members(stack.pid(name))}
        assert len(members) >= 6  # nginx (2+), app2 (2), worker, prometheus
        started = time.monotonic()
        down = stack.script("down", timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
        assert time.monotonic() - started < 30
        assert members.isdisjoint(_live_pids()), members & _live_pids()
        assert stack.pid_names() == []
        assert bystander.poll() is None, "down killed a process it did not start"
        with pytest.raises(requests.ConnectionError):
            stack.get("/healthz", timeout=2)
        assert stack.script("status").returncode != 0
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def _live_pids() -> set[int]:
    live = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.add(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return live
