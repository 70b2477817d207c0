#!/usr/bin/env python3
"""Generate docs/api.md, the API reference, from a running app.

Every operation of the OpenAPI document (``/api/openapi.json``) gets a real example. A scenario
registers a customer and logs in; an admin creates a category, a product with a picture, a
shipping zone and a carrier leg; the customer shops (cart, wishlist, review, checkout with an
Idempotency-Key, payment, order history and live events); the deletes come last, on objects
made for them. Who may call each operation is read from the document (its ``security``, and the
403 that ``@blp.auth(role=...)`` documents) and checked against the running app: without a
token, with a customer's token, with another customer's token and with the admin's.

    .venv/bin/python scripts/api_reference.py                      # its own app -> docs/api.md
    .venv/bin/python scripts/api_reference.py --base-url http://127.0.0.1:8000 --json api.json

Without ``--base-url`` it starts its own app on the embedded defaults (SQLite, no Redis) in a
temporary instance folder: ``flask db upgrade``, a small ``flask seed``, an admin made with
``flask users create-admin``, then gunicorn on a free port in 8700-8799 and the background
worker (which processes the payment); both are stopped by PID at the end, also on error.

With ``--base-url`` the admin is either named (``--admin-username`` and ``--admin-password``)
or created with ``flask users create-admin`` in this process's environment, which must then
point at the server's database (``DATABASE_URL``, or ``INSTANCE_PATH`` for SQLite).

Other scripts can import it: ``capture(base_url, ...) -> dict`` runs the scenario against a
running app, and ``render_markdown(data) -> str`` turns what it returns into the Markdown.
"""

# No ``from __future__ import annotations``: the dataclasses below must also build when this
# file is loaded by path (importlib), before it is in sys.modules.
import argparse
import copy
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = PROJECT_ROOT / ".venv" / "bin"
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "api.md"
REGENERATE = ".venv/bin/python scripts/api_reference.py"
HOST = "127.0.0.1"
PORTS = range(8700, 8800)
# The base URL shown in the examples (make run's); the one captured is in the JSON data.
DOC_BASE_URL = "http://127.0.0.1:8000"
SEED_ARGS = ["--products", "12", "--pictures", "2", "--customers", "1", "--roots", "2"]
SEED_ARGS += ["--children", "2", "--depth", "2"]

# Fixed example values in place of what changes from one capture to the next.
EXAMPLE_TIMESTAMP = "2026-11-21T10:00:00Z"
EXAMPLE_REQUEST_ID = "9b2f6c0e4d1a4f3e8c7b5a2d1e0f9c8b"
IDEMPOTENCY_KEYS = {
    "order": "5d3c1f0a-8e2b-4c7d-9a6f-0b1e2d3c4a5b",
    "payment": "8f7e6d5c-4b3a-4291-8e7d-6c5b4a3f2e1d",
    "second order": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
}
CUSTOMER_PASSWORD = "correct-horse-42"
STREAM_SECONDS = 3.0
PAYMENT_WAIT_SECONDS = 20.0

_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ADMIN_ROLE = re.compile(r"Needs the (\w+) role")
_ADMIN_TOO = re.compile(r"\b(?:or|nor) an? admin\b|\bor admin\b|\(admin:", re.IGNORECASE)
# Response headers worth showing a client (the security headers and X-Request-ID are on every
# answer and described once in the introduction).
SHOWN_HEADERS = (
    "Content-Type",
    "Location",
    "ETag",
    "Cache-Control",
    "Retry-After",
    "X-Pagination",
    "Link",
    "Idempotent-Replayed",
    "WWW-Authenticate",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
)
REQUEST_HEADERS = (
    "Authorization",
    "Idempotency-Key",
    "Content-Type",
    "If-None-Match",
    "Last-Event-ID",
    "Accept",
)
METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the app this script starts itself ------------------------------------------------------

# Settings of the calling shell that would point the app somewhere else than its embedded
# defaults in the temporary instance folder.
_FOREIGN_SETTINGS = (
    "APP_ENV",
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "INSTANCE_PATH",
    "HUEY_SQLITE_PATH",
    "SANDBOX_GATEWAY_PATH",
    "MAIL_SERVER",
    "MAIL_FOLDER",
    "MEDIA_ROOT",
    "MEDIA_URL",
    "MEDIA_STORAGE",
    "BACKUP_DIR",
    "CACHE_TYPE",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "FLASK_DEBUG",
    "HOST",
    "PORT",
)


@dataclass
class LocalApp:
    base_url: str
    admin: tuple[str, str]
    instance: Path


def _free_port() -> int:
    """A port of 8700-8799 nobody listens on, tried from a place that depends on this process
    (two runs side by side rarely pick the same)."""
    start = os.getpid() % len(PORTS)
    for offset in range(len(PORTS)):
        port = PORTS[(start + offset) % len(PORTS)]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _run_flask(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(BIN / "flask"), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM by PID (gunicorn's graceful stop), SIGKILL if it is still there after ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within 60 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def local_app(keep: bool = False) -> Iterator[LocalApp]:
    """Migrate, seed and serve the app on its embedded defaults in a temporary instance folder,
    with the background worker beside it; stop both by PID and remove the folder afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="api-reference-"))
    instance = workdir / "instance"
    instance.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN_SETTINGS}
    env.update(FLASK_APP="wsgi.py", INSTANCE_PATH=str(instance), HOST=HOST, LOG_LEVEL="warning")
    processes: list[subprocess.Popen] = []
    try:
        log(f"instance folder {instance}: flask db upgrade, flask seed")
        _run_flask(["db", "upgrade"], env)
        _run_flask(["seed", *SEED_ARGS], env)
        admin = ("admin", secrets.token_urlsafe(18))
        _run_flask(
            ["users", "create-admin", "--username", admin[0], "--email", "admin@example.com"]
            + ["--password", admin[1]],
            env,
        )

        worker_log = workdir / "worker.log"
        with open(worker_log, "wb") as output:
            worker = subprocess.Popen(
                [str(BIN / "huey_consumer"), "ecommerce.worker.huey", "-k", "thread", "-w", "2"],
                cwd=PROJECT_ROOT,
                env={**env, "LOG_LEVEL": "info"},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(worker)
        _wait_for(lambda: "Huey consumer started" in worker_log.read_text(), worker, worker_log, "the worker")

        port = _free_port()
        base_url = f"http://{HOST}:{port}"
        server_log = workdir / "gunicorn.log"
        with open(server_log, "wb") as output:
            server = subprocess.Popen(
                [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
                cwd=PROJECT_ROOT,
                env={**env, "PORT": str(port)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        processes.append(server)

        def healthy() -> bool:
            try:
                return requests.get(base_url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait_for(healthy, server, server_log, "gunicorn")
        log(f"serving on {base_url} (gunicorn PID {server.pid}, worker PID {worker.pid})")
        yield LocalApp(base_url, admin, instance)
    finally:
        for process in reversed(processes):
            _stop(process)
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- normalising what changes from one capture to the next ------------------------------------


class Normaliser:
    """Replaces tokens, timestamps, request ids, ETags and the base URL with stable values."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.etags: dict[str, str] = {}

    def text(self, value: str) -> str:
        value = value.replace(self.base_url, DOC_BASE_URL)
        value = _JWT.sub(lambda match: match.group(0)[:24] + "…", value)
        return _TIMESTAMP.sub(EXAMPLE_TIMESTAMP, value)

    def etag(self, value: str) -> str:
        if value not in self.etags:
            weak = value.startswith("W/")
            body = value[2:] if weak else value
            digest = hashlib.sha256(f"example-etag-{len(self.etags)}".encode()).hexdigest()
            length = max(len(body.strip('"')), 8)
            self.etags[value] = ("W/" if weak else "") + '"' + digest[:length] + '"'
        return self.etags[value]

    def body(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: EXAMPLE_REQUEST_ID if key == "request_id" and isinstance(item, str) else self.body(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self.body(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def header(self, name: str, value: str) -> str:
        if name.lower() in ("etag", "if-none-match"):
            return self.etag(value)
        return self.text(value)


# -- the HTTP client that records examples ----------------------------------------------------


@dataclass
class Account:
    username: str
    password: str
    email: str
    id: int | None = None
    access: str | None = None
    refresh: str | None = None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    events: str | None = None

    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Recorder:
    base_url: str
    spec: dict[str, Any]
    stranger: Account | None = None
    customer: Account | None = None
    admin: Account | None = None
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.http = requests.Session()
        self.normalise = Normaliser(self.base_url)

    # The operation as the document describes it.
    def operation(self, method: str, template: str) -> dict[str, Any]:
        try:
            return self.spec["paths"][template][method.lower()]
        except KeyError:
            raise KeyError(f"{method} {template} is not in the OpenAPI document") from None

    def send(
        self,
        method: str,
        template: str,
        *,
        path: dict[str, Any] | None = None,
        account: Account | None = None,
        token: str = "access",
        params: dict[str, Any] | None = None,
        body: Any = None,
        upload: tuple[str, bytes, str] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> tuple[Answer, dict[str, Any], dict[str, Any]]:
        """Send one request; the answer, and the request and response as the reference shows them."""
        url_path = template.format(**(path or {}))
        query = urlencode(params or {}, doseq=True)
        sent = dict(headers or {})
        shown: dict[str, str] = {}
        if account is not None:
            secret = account.refresh if token == "refresh" else account.access
            sent["Authorization"] = f"Bearer {secret}"
            whose = "admin " if account is self.admin and account is not None else ""
            shown["Authorization"] = f"Bearer <{whose}{token} token>"
        if stream:
            sent.setdefault("Accept", "text/event-stream")
        kwargs: dict[str, Any] = {"headers": sent, "timeout": (5, STREAM_SECONDS if stream else 30)}
        shown_body: Any = None
        if upload is not None:
            name, data, mime = upload
            kwargs["files"] = {"file": (name, data, mime)}
            shown["Content-Type"] = "multipart/form-data; boundary=example-boundary"
            shown_body = {"multipart": {"field": "file", "filename": name, "type": mime, "bytes": len(data)}}
        elif body is not None:
            kwargs["json"] = body
            shown["Content-Type"] = "application/json"
            shown_body = copy.deepcopy(body)
        for name in REQUEST_HEADERS:
            if name in sent and name not in shown:
                shown[name] = self.normalise.header(name, sent[name])
        for attempt in range(3):
            response = self.http.request(
                method, self.base_url + url_path + ("?" + query if query else ""), stream=stream, **kwargs
            )
            retry_after = response.headers.get("Retry-After", "")
            if (
                response.status_code == 429
                and retry_after.isdigit()
                and int(retry_after) <= 65
                and attempt < 2
            ):
                log(f"429 on {method} {url_path}: waiting {retry_after} s (the auth rate limit)")
                response.close()
                time.sleep(int(retry_after) + 1)
                continue
            break
        answer = self._read(response, stream)
        request_record = {
            "method": method,
            "path": url_path,
            "query": query,
            "headers": {name: shown[name] for name in REQUEST_HEADERS if name in shown},
            "body": shown_body,
        }
        response_record = {
            "status": answer.status,
            "reason": _reason(answer.status),
            "headers": {
                name: self.normalise.header(name, answer.headers[name])
                for name in SHOWN_HEADERS
                if name in answer.headers
            },
            "body": self.normalise.body(answer.body),
            "events": self.normalise.text(answer.events) if answer.events is not None else None,
        }
        return answer, request_record, response_record

    @staticmethod
    def _read(response: requests.Response, stream: bool) -> Answer:
        headers = dict(response.headers)
        content_type = headers.get("Content-Type", "")
        if stream and response.status_code == 200 and content_type.startswith("text/event-stream"):
            return Answer(response.status_code, headers, None, _first_events(response))
        try:
            data = response.content
        finally:
            response.close()
        body: Any = None
        if data and "json" in content_type:
            body = json.loads(data)
        elif data:
            body = data.decode("utf-8", "replace")[:2000]
        return Answer(response.status_code, headers, body)

    def call(
        self,
        method: str,
        template: str,
        *,
        account: Account | None = None,
        example: bool | str = True,
        expect: int | tuple[int, ...] | None = None,
        note: str | None = None,
        **kwargs: Any,
    ) -> Answer:
        """Send one request and keep it as the operation's example (``example`` True), as a
        further example under that title (a string), or not at all (False). The first example
        of an operation that needs a token is preceded and followed by the access checks."""
        key = f"{method} {template}"
        operation = self.operation(method, template)
        probing = example is True and key not in self.checks and bool(operation.get("security"))
        if probing:
            self.checks[key] = []
            self._probe_before(key, operation, method, template, account, kwargs)
        answer, request_record, response_record = self.send(method, template, account=account, **kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted is not None and answer.status not in wanted:
            raise RuntimeError(
                f"{method} {request_record['path']}: expected {wanted}, got {answer.status}: {answer.body}"
            )
        if example:
            record = {"request": request_record, "response": response_record}
            if isinstance(example, str):
                record["title"] = example
                self.examples.setdefault(key, []).append(record)
            else:
                self.examples[key] = [record, *self.examples.get(key, [])[1:]]
        if note:
            self.notes[key] = note
        if probing:
            self._probe_after(key, operation, method, template, account, kwargs)
        return answer

    # Access checks: the same request, sent as someone else.
    def _check(self, key: str, who: str, method: str, template: str, **kwargs: Any) -> int:
        answer, _request, _response = self.send(method, template, **kwargs)
        self.checks[key].append({"as": who, "status": answer.status})
        return answer.status

    def _probe_before(self, key, operation, method, template, account, kwargs) -> None:
        self._check(key, "no token", method, template, **_without(kwargs, "token"))
        if _admin_role(operation):
            self._check(key, "a customer", method, template, account=self.customer, **kwargs)
        elif "{" in template and method != "GET" and self.stranger is not None:
            self._check(key, "another customer", method, template, account=self.stranger, **kwargs)

    def _probe_after(self, key, operation, method, template, account, kwargs) -> None:
        if _admin_role(operation) or "{" not in template or account is self.admin:
            return
        if method == "GET" and self.stranger is not None:
            self._check(key, "another customer", method, template, account=self.stranger, **kwargs)
        refused = any(c["as"] == "another customer" and c["status"] in (403, 404) for c in self.checks[key])
        if refused and method != "DELETE" and self.admin is not None:
            # The object is its owner's: may an admin act on it too? Asked after the owner's own
            # call, so a change the admin may make cannot spoil the example (a DELETE would find
            # nothing left to ask about).
            self._check(key, "an admin", method, template, account=self.admin, **kwargs)

    def extra(self, name: str, method: str, template: str, **kwargs: Any) -> Answer:
        """A request kept for the introduction (an error, a replay), not as an operation's example."""
        answer, request_record, response_record = self.send(method, template, **kwargs)
        self.extras[name] = {"request": request_record, "response": response_record}
        return answer


def _without(kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in kwargs.items() if key not in names}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _first_events(response: requests.Response) -> str:
    """The first event(s) of a text/event-stream answer: read for at most STREAM_SECONDS, then
    the connection is closed (a stream never ends by itself)."""
    lines: list[str] = []
    events = 0
    deadline = time.monotonic() + STREAM_SECONDS
    try:
        for raw in response.iter_lines(chunk_size=1, decode_unicode=False):
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if line.startswith("data:"):
                events += 1
            if (line == "" and events) or time.monotonic() > deadline:
                break
    except requests.RequestException:
        pass  # the read timed out: what came so far is the example
    finally:
        response.close()
    return "\n".join(lines).rstrip("\n") + "\n"


def _admin_role(operation: dict[str, Any]) -> str | None:
    """The role ``@blp.auth(role=...)`` requires, from the 403 it documents."""
    forbidden = operation.get("responses", {}).get("403", {})
    match = _ADMIN_ROLE.search(forbidden.get("description", "") if isinstance(forbidden, dict) else "")
    return match.group(1) if match else None


def _png(width: int = 800, height: int = 600) -> bytes:
    """A small PNG made with Pillow: a blue field with a yellow band."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (40, 90, 160))
    ImageDraw.Draw(image).rectangle((0, height // 3, width, 2 * height // 3), fill=(240, 200, 40))
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


# -- the scenario ---------------------------------------------------------------------------


def _unique(attempt: Callable[[int], Answer]) -> Answer:
    """Call ``attempt(n)`` with n = 1, 2, ... while the name it uses is taken (409): a second
    capture against the same server gets its own objects."""
    for number in range(1, 50):
        answer = attempt(number)
        if answer.status != 409:
            return answer
    raise RuntimeError("every name tried was taken")


def _suffix(number: int, separator: str = "") -> str:
    return "" if number == 1 else f"{separator}{number}"


def _register(rec: Recorder, name: str, example: bool) -> Account:
    account = Account(name, CUSTOMER_PASSWORD, f"{name}@example.com")

    def attempt(number: int) -> Answer:
        account.username = name + _suffix(number)
        account.email = f"{account.username}@example.com"
        body = {
            "username": account.username,
            "email": account.email,
            "password": account.password,
            "first_name": name.capitalize(),
            "last_name": "Example",
        }
        return rec.call("POST", "/api/auth/register/", body=body, example=example, expect=(201, 409))

    account.id = _unique(attempt).body["id"]
    return account


def _login(rec: Recorder, account: Account, example: bool = False) -> Account:
    answer = rec.call(
        "POST",
        "/api/auth/login/",
        body={"username": account.username, "password": account.password},
        example=example,
        expect=200,
    )
    account.access, account.refresh = answer.body["access_token"], answer.body["refresh_token"]
    return account


def _admin_account(rec: Recorder, admin: tuple[str, str] | None, cli_env: dict[str, str] | None) -> Account:
    if admin is not None:
        account = Account(admin[0], admin[1], "")
    else:
        env = _admin_cli_env(cli_env)
        password = secrets.token_urlsafe(18)
        for number in range(1, 20):
            username = "docs-admin" + _suffix(number, "-")
            try:
                _run_flask(
                    ["users", "create-admin", "--username", username, "--email", f"{username}@example.com"]
                    + ["--password", password],
                    env,
                )
            except RuntimeError as error:
                if "already registered" in str(error):  # the name is taken: try the next one
                    continue
                raise
            account = Account(username, password, "")
            break
        else:
            raise RuntimeError("could not create an admin")
    try:
        _login(rec, account)
    except RuntimeError as error:
        raise RuntimeError(
            f"the admin {account.username} cannot log in ({error}); if it was just created with flask "
            "users create-admin, that environment does not point at the server's database"
        ) from None
    return account


def _admin_cli_env(cli_env: dict[str, str] | None) -> dict[str, str]:
    """The environment ``flask users create-admin`` runs in: it must name the server's database
    (an unset DATABASE_URL and INSTANCE_PATH would mean this checkout's instance/ folder)."""
    env = dict(os.environ if cli_env is None else cli_env)
    if not (env.get("DATABASE_URL") or env.get("INSTANCE_PATH")):
        raise SystemExit(
            "--base-url needs an admin: give --admin-username and --admin-password, or set "
            "DATABASE_URL (or INSTANCE_PATH) to the server's so that one can be created"
        )
    env.setdefault("FLASK_APP", "wsgi.py")
    return env


def run_scenario(rec: Recorder, admin: tuple[str, str] | None, cli_env: dict[str, str] | None) -> None:
    """One realistic walk through the shop that gives every operation its example."""
    rec.call("GET", "/healthz")
    rec.call(
        "GET",
        "/readyz",
        note="On the embedded defaults (no REDIS_URL) Redis is reported as `not configured`; "
        "with Redis down the answer is 503 with the same `checks`.",
    )

    # Accounts: a customer, another customer (for the access checks) and an admin.
    ada = rec.customer = _register(rec, "ada", example=True)
    bob = rec.stranger = _register(rec, "bob", example=False)
    _login(rec, ada, example=True)
    _login(rec, bob)
    boss = rec.admin = _admin_account(rec, admin, cli_env)
    rotated = rec.call("POST", "/api/auth/refresh/", account=ada, token="refresh", expect=200)
    ada.access, ada.refresh = rotated.body["access_token"], rotated.body["refresh_token"]

    rec.call("GET", "/api/users/me/", account=ada, expect=200)
    rec.call(
        "PATCH",
        "/api/users/me/",
        account=ada,
        body={"first_name": "Ada", "last_name": "Lovelace"},
        expect=200,
    )
    rec.call("GET", "/api/users/", account=boss, params={"role": "customer", "page_size": 5}, expect=200)
    rec.call("GET", "/api/users/{user_id}/", account=boss, path={"user_id": ada.id}, expect=200)

    # The catalog: a category, a product with a picture.
    tree = rec.call("GET", "/api/categories/", expect=200).body
    root = next(category for category in tree if category["parent_id"] is None)
    garden = _unique(
        lambda n: rec.call(
            "POST",
            "/api/categories/",
            account=boss,
            body={"name": "Garden" + _suffix(n, " "), "description": "Tools and furniture for the garden"},
            expect=(201, 409),
        )
    ).body
    rec.call("GET", "/api/categories/{category_id}/", path={"category_id": root["id"]}, expect=200)
    rec.call(
        "PATCH",
        "/api/categories/{category_id}/",
        account=boss,
        path={"category_id": garden["id"]},
        body={"description": "Tools, pots and furniture for the garden"},
        expect=200,
    )
    can = rec.call(
        "POST",
        "/api/products/",
        account=boss,
        body={
            "name": "Watering can",
            "description": "Ten litres, galvanised steel, with a brass rose.",
            "price": "24.90",
            "stock_quantity": 50,
            "category_id": garden["id"],
        },
        expect=201,
    ).body
    product = {"product_id": can["id"]}
    rec.call(
        "POST",
        "/api/products/{product_id}/images/",
        account=boss,
        path=product,
        upload=("watering-can.png", _png(), "image/png"),
        expect=201,
    )
    rec.call(
        "GET",
        "/api/products/",
        params={"category": root["id"], "in_stock": "true", "sort": "-price", "page_size": 3},
        expect=200,
    )
    detail = rec.call("GET", "/api/products/{product_id}/", path=product, expect=200)
    rec.call(
        "GET",
        "/api/products/{product_id}/",
        path=product,
        headers={"If-None-Match": detail.headers["ETag"]},
        example="Revalidating with If-None-Match: 304, no body",
        expect=304,
    )
    rec.call(
        "PATCH",
        "/api/products/{product_id}/",
        account=boss,
        path=product,
        body={"price": "22.50", "stock_quantity": 40},
        expect=200,
    )
    rec.call("GET", "/api/products/{product_id}/events/", path=product, stream=True, expect=200)
    rec.extra("not_found", "GET", "/api/products/{product_id}/", path={"product_id": 999999})

    # Reviews (the other customer reviews too: the check that any signed-in user may).
    review = rec.call(
        "POST",
        "/api/products/{product_id}/reviews/",
        account=ada,
        path=product,
        body={"rating": 5, "comment": "Pours evenly, and the rose comes off for cleaning."},
        expect=201,
    ).body
    rec.call(
        "PATCH",
        "/api/reviews/{review_id}/",
        account=ada,
        path={"review_id": review["id"]},
        body={"rating": 4, "comment": "Pours evenly; the handle gets warm in the sun."},
        expect=200,
    )
    rec.call("GET", "/api/products/{product_id}/reviews/", path=product, expect=200)
    rec.call("GET", "/api/reviews/{review_id}/", path={"review_id": review["id"]}, expect=200)

    # Shipping: a zone, a leg to it, a quote.
    rec.call("GET", "/api/shipping/zones/", params={"page_size": 5}, expect=200)
    zone = _unique(
        lambda n: rec.call(
            "POST",
            "/api/shipping/zones/",
            account=boss,
            body={"code": "DK" + _suffix(n, "-"), "name": "Denmark"},
            expect=(201, 409),
        )
    ).body
    rec.call("GET", "/api/shipping/zones/{code}/", path={"code": zone["code"]}, expect=200)
    rec.call(
        "POST",
        "/api/shipping/legs/",
        account=boss,
        body={"from_zone": "WH-NORTH", "to_zone": zone["code"], "cost": "8.40", "days": 2},
        expect=201,
    )
    rec.call(
        "POST",
        "/api/shipping/legs/",
        account=boss,
        body={"from_zone": "HUB-CENTRAL", "to_zone": zone["code"], "cost": "3.60", "days": 3},
        example=False,
        expect=201,
    )
    rec.call("GET", "/api/shipping/legs/", account=boss, params={"page_size": 3}, expect=200)
    rec.call("GET", "/api/shipping/quote/", params={"to": zone["code"]}, expect=200)

    # Cart and wishlist.
    line = rec.call(
        "POST", "/api/cart/items/", account=ada, body={"product_id": can["id"], "quantity": 1}
    ).body
    rec.call(
        "PATCH", "/api/cart/items/{item_id}/", account=ada, path={"item_id": line["id"]}, body={"quantity": 2}
    )
    rec.extra(
        "validation",
        "PATCH",
        "/api/cart/items/{item_id}/",
        account=ada,
        path={"item_id": line["id"]},
        body={"quantity": 0},
    )
    rec.call("GET", "/api/cart/", account=ada, expect=200)
    other = next(p for p in rec.call("GET", "/api/products/", example=False).body if p["id"] != can["id"])
    wish = rec.call(
        "POST", "/api/wishlist/items/", account=ada, body={"product_id": other["id"]}, expect=201
    ).body
    rec.call("GET", "/api/wishlist/", account=ada, expect=200)

    # Checkout, payment, order history and events.
    checkout = {
        "shipping_address": "Ada Lovelace, Nyhavn 1, 1051 Copenhagen",
        "shipping": {"to": zone["code"], "method": "economy"},
    }
    order_key = {"Idempotency-Key": IDEMPOTENCY_KEYS["order"]}
    order = rec.call("POST", "/api/orders/", account=ada, headers=order_key, body=checkout, expect=201).body
    rec.call(
        "POST",
        "/api/orders/",
        account=ada,
        headers=order_key,
        body=checkout,
        example="A retry with the same Idempotency-Key and body: the first answer, replayed",
        expect=201,
    )
    the_order = {"order_id": order["id"]}
    payment = rec.call(
        "POST",
        "/api/orders/{order_id}/payments/",
        account=ada,
        path=the_order,
        headers={"Idempotency-Key": IDEMPOTENCY_KEYS["payment"]},
        body={"payment_method": "card", "token": "tok_visa"},
        expect=202,
    ).body
    deadline = time.monotonic() + PAYMENT_WAIT_SECONDS
    status = payment["status"]
    while status == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = rec.call(
            "GET",
            "/api/payments/{payment_id}/",
            account=ada,
            path={"payment_id": payment["id"]},
            example=False,
        ).body["status"]
    rec.call(
        "GET",
        "/api/payments/{payment_id}/",
        account=ada,
        path={"payment_id": payment["id"]},
        expect=200,
        note=None
        if status != "pending"
        else "No background worker processed the payment in time: it is still pending.",
    )
    rec.call("GET", "/api/orders/", account=ada, expect=200)
    rec.call("GET", "/api/orders/{order_id}/", account=ada, path=the_order, expect=200)
    rec.call("GET", "/api/orders/{order_id}/events/", account=ada, path=the_order, stream=True, expect=200)
    rec.call(
        "PATCH",
        "/api/orders/{order_id}/",
        account=boss,
        path=the_order,
        body={"order_status": "shipped" if status == "succeeded" else "paid"},
        expect=200,
    )

    # A second order, cancelled: its stock comes back.
    rec.call(
        "POST", "/api/cart/items/", account=ada, body={"product_id": can["id"], "quantity": 1}, example=False
    )
    second = rec.call(
        "POST",
        "/api/orders/",
        account=ada,
        headers={"Idempotency-Key": IDEMPOTENCY_KEYS["second order"]},
        example=False,
        expect=201,
    ).body
    rec.call(
        "POST", "/api/orders/{order_id}/cancel/", account=ada, path={"order_id": second["id"]}, expect=200
    )

    # The deletes, last, each on objects made for it.
    line = rec.call(
        "POST",
        "/api/cart/items/",
        account=ada,
        body={"product_id": other["id"], "quantity": 1},
        example=False,
    ).body
    rec.call("DELETE", "/api/cart/items/{item_id}/", account=ada, path={"item_id": line["id"]}, expect=204)
    rec.call(
        "POST",
        "/api/cart/items/",
        account=ada,
        body={"product_id": other["id"], "quantity": 1},
        example=False,
    )
    rec.call("DELETE", "/api/cart/", account=ada, expect=204)
    rec.call(
        "DELETE", "/api/wishlist/items/{item_id}/", account=ada, path={"item_id": wish["id"]}, expect=204
    )
    second_review = rec.call(
        "POST",
        "/api/products/{product_id}/reviews/",
        account=ada,
        path={"product_id": other["id"]},
        body={"rating": 3, "comment": "Does the job."},
        example=False,
        expect=201,
    ).body
    rec.call(
        "DELETE",
        "/api/reviews/{review_id}/",
        account=ada,
        path={"review_id": second_review["id"]},
        expect=204,
    )
    spare = rec.call(
        "POST",
        "/api/products/",
        account=boss,
        body={"name": "Garden gnome", "price": "9.90", "stock_quantity": 3, "category_id": garden["id"]},
        example=False,
        expect=201,
    ).body
    picture = rec.call(
        "POST",
        "/api/products/{product_id}/images/",
        account=boss,
        path={"product_id": spare["id"]},
        upload=("gnome.png", _png(300, 400), "image/png"),
        example=False,
        expect=201,
    ).body
    rec.call(
        "DELETE",
        "/api/products/{product_id}/images/{image_id}/",
        account=boss,
        path={"product_id": spare["id"], "image_id": picture["id"]},
        expect=204,
    )
    rec.call(
        "DELETE", "/api/products/{product_id}/", account=boss, path={"product_id": spare["id"]}, expect=204
    )
    empty = _unique(
        lambda n: rec.call(
            "POST",
            "/api/categories/",
            account=boss,
            body={"name": "Seasonal" + _suffix(n, " "), "parent_id": garden["id"]},
            example=False,
            expect=(201, 409),
        )
    ).body
    rec.call(
        "DELETE",
        "/api/categories/{category_id}/",
        account=boss,
        path={"category_id": empty["id"]},
        expect=204,
    )
    spare_zone = _unique(
        lambda n: rec.call(
            "POST",
            "/api/shipping/zones/",
            account=boss,
            body={"code": "LU" + _suffix(n, "-"), "name": "Luxembourg"},
            example=False,
            expect=(201, 409),
        )
    ).body
    leg = rec.call(
        "POST",
        "/api/shipping/legs/",
        account=boss,
        body={"from_zone": "HUB-CENTRAL", "to_zone": spare_zone["code"], "cost": "5.20", "days": 2},
        example=False,
        expect=201,
    ).body
    rec.call("DELETE", "/api/shipping/legs/{leg_id}/", account=boss, path={"leg_id": leg["id"]}, expect=204)
    rec.call(
        "DELETE", "/api/shipping/zones/{code}/", account=boss, path={"code": spare_zone["code"]}, expect=204
    )
    session = _login(rec, Account(ada.username, ada.password, ada.email))
    rec.call("POST", "/api/auth/logout/", account=session, expect=204)
    rec.extra("unauthorized", "GET", "/api/users/me/", account=session)


# -- who may call an operation ---------------------------------------------------------------


def who_may_call(
    operation: dict[str, Any], checks: list[dict[str, Any]], path: str = "", token: str = "access"
) -> dict[str, str]:
    """Public, any signed-in user, the owner (perhaps also an admin), or admin only: from the
    document's ``security`` and the 403 ``@blp.auth(role=...)`` documents, and for an object of
    a path, from what another customer and an admin were answered."""
    if not operation.get("security"):
        return {"level": "public", "text": "Public: no token needed."}
    role = _admin_role(operation)
    if role:
        return {
            "level": role,
            "text": f"Admin only: a bearer access token of a user with the `{role}` role; "
            "any other user's token is answered 403.",
        }
    answers = {check["as"]: check["status"] for check in checks}
    stranger = answers.get("another customer")
    if stranger in (403, 404):
        admin = answers.get("an admin")
        texts = [operation.get("summary", ""), operation.get("description", "")]
        texts += [response.get("description", "") for response in operation.get("responses", {}).values()]
        admin_too = (admin is not None and (200 <= admin < 300 or admin == 409)) or any(
            _ADMIN_TOO.search(text or "") for text in texts
        )
        thing = _object_name(operation.get("tags") or [], path)
        if admin_too:
            text = f"The owner of the {thing}, or an admin"
        else:
            text = f"Only the owner of the {thing}" + (" (not even an admin)" if admin is not None else "")
        text += f": another user's token is answered {stranger}"
        text += f", as if the {thing} did not exist." if stranger == 404 else "."
        return {"level": "owner or admin" if admin_too else "owner", "text": text}
    if token == "refresh":
        return {
            "level": "signed-in",
            "text": "Any signed-in user, presenting the refresh token (not the access token) "
            "as the bearer token.",
        }
    return {"level": "signed-in", "text": "Any signed-in user: a bearer access token."}


def _object_name(tags: list[str], path: str) -> str:
    """What the last id of a path names: ``/api/orders/{order_id}/payments/`` an order,
    ``/api/cart/items/{item_id}/`` a cart line."""
    names = re.findall(r"\{(\w+)\}", path)
    name = names[-1].removesuffix("_id").replace("_", " ") if names else "object"
    if name == "item":
        return {"carts": "cart line", "wishlists": "wishlist line"}.get(tags[0] if tags else "", "line")
    return name


# -- capture ----------------------------------------------------------------------------------


def _operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method.upper() in METHOD_ORDER
    ]


def capture(
    base_url: str,
    *,
    admin: tuple[str, str] | None = None,
    cli_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the scenario against the app at ``base_url``: the OpenAPI document, and per operation
    its access rule, the access checks made and the example(s) captured.

    ``admin``: (username, password) of an admin account; without it one is created with
    ``flask users create-admin`` in ``cli_env`` (default: this process's environment)."""
    base_url = base_url.rstrip("/")
    if admin is None:
        _admin_cli_env(cli_env)  # refused before any request changes anything
    spec_response = requests.get(base_url + "/api/openapi.json", timeout=30)
    spec_response.raise_for_status()
    spec = spec_response.json()
    rec = Recorder(base_url, spec)
    run_scenario(rec, admin, cli_env)

    operations = []
    for method, path in _operations(spec):
        key = f"{method} {path}"
        item = spec["paths"][path]
        operation = item[method.lower()]
        examples = rec.examples.get(key, [])
        token = "access"
        if examples and "<refresh token>" in examples[0]["request"]["headers"].get("Authorization", ""):
            token = "refresh"
        operations.append(
            {
                "method": method,
                "path": path,
                "tag": (operation.get("tags") or ["other"])[0],
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "security": bool(operation.get("security")),
                "access": who_may_call(operation, rec.checks.get(key, []), path, token),
                "checks": rec.checks.get(key, []),
                "examples": examples,
                "note": rec.notes.get(key),
            }
        )
    missing = [f"{op['method']} {op['path']}" for op in operations if not op["examples"]]
    if missing:
        log("no example captured for: " + ", ".join(missing))
    return {
        "generated_by": "scripts/api_reference.py",
        "captured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base_url": base_url,
        "doc_base_url": DOC_BASE_URL,
        "openapi": spec,
        "operations": operations,
        "extras": rec.extras,
    }


# -- Markdown -------------------------------------------------------------------------------


class Anchors:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats
    numbered."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, heading: str) -> str:
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = self.seen.get(slug, 0)
        self.seen[slug] = count + 1
        return slug if count == 0 else f"{slug}-{count}"


def _cut(value: Any, keep: int = 2) -> Any:
    """Lists longer than ``keep`` cut to their first items, with a note of how many were left out."""
    if isinstance(value, list):
        head = [_cut(item, keep) for item in value[:keep]]
        left = len(value) - keep
        return head + ([f"… {left} more item{'s' if left > 1 else ''}"] if left > 0 else [])
    if isinstance(value, dict):
        return {key: _cut(item, keep) for key, item in value.items()}
    return value


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(_cut(value), indent=2, ensure_ascii=False), "```"]


def _request_block(request: dict[str, Any]) -> list[str]:
    target = request["path"] + ("?" + request["query"] if request["query"] else "")
    lines = ["```http", f"{request['method']} {target} HTTP/1.1", f"Host: {DOC_BASE_URL.split('//', 1)[1]}"]
    lines += [f"{name}: {value}" for name, value in request["headers"].items()]
    body = request["body"]
    if isinstance(body, dict) and "multipart" in body:
        part = body["multipart"]
        lines += [
            "",
            "--example-boundary",
            f'Content-Disposition: form-data; name="{part["field"]}"; filename="{part["filename"]}"',
            f"Content-Type: {part['type']}",
            "",
            f"<the {part['type']} file, {part['bytes']:,} bytes>",
            "--example-boundary--",
        ]
    lines.append("```")
    if body is not None and not (isinstance(body, dict) and "multipart" in body):
        lines += _json_block(body)
    return lines


def _response_block(response: dict[str, Any]) -> list[str]:
    lines = ["```http", f"HTTP/1.1 {response['status']} {response['reason']}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response["headers"].items()]
    lines.append("```")
    if response.get("events"):
        lines += ["```text", response["events"].rstrip("\n"), "```"]
    elif isinstance(response["body"], (dict, list)):
        lines += _json_block(response["body"])
    elif response["body"]:
        lines += ["```text", str(response["body"]).rstrip("\n"), "```"]
    return lines


def _resolve(spec: dict[str, Any], value: Any) -> Any:
    while isinstance(value, dict) and "$ref" in value:
        node: Any = spec
        for part in value["$ref"].lstrip("#/").split("/"):
            node = node[part]
        value = node
    return value


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    return schema.get("type", "")


def _type_of(spec: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"object ({_schema_name(schema)})"
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _type_of(spec, schema["allOf"][0])
    kind = schema.get("type", "string" if "enum" in schema else "any")
    if kind == "array":
        return f"array of {_type_of(spec, schema.get('items', {}))}"
    if schema.get("format") == "decimal":
        return 'string (decimal, "19.99")'
    if schema.get("format") and schema["format"] not in ("int32", "int64"):
        return f"{kind} ({schema['format']})"
    return kind + (" or null" if schema.get("nullable") else "")


def _constraints(schema: dict[str, Any]) -> str:
    notes = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(f"`{value}`" for value in schema["enum"] if value is not None))
    for key, label in (("minLength", "min length"), ("maxLength", "max length")):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    for key, label in (("minimum", "≥"), ("x-minimum", "≥"), ("maximum", "≤"), ("x-maximum", "≤")):
        if key in schema and not (key == "maximum" and schema[key] >= 2**31 - 1):
            notes.append(f"{label} {schema[key]}")
    if "default" in schema and schema["default"] not in ("", None):
        notes.append(f"default `{json.dumps(schema['default'])}`")
    if "pattern" in schema and schema.get("format") != "decimal":
        notes.append(f"pattern `{schema['pattern']}`")
    return ", ".join(notes)


def _notes(description: str, constraints: str) -> str:
    if description and constraints:
        return f"{description} ({constraints})"
    return description or constraints


def _cell(text: str) -> str:
    return (text or "—").replace("|", "\\|").replace("\n", " ")


def _parameters(spec: dict[str, Any], path: str, method: str) -> list[str]:
    item = spec["paths"][path]
    params = [
        _resolve(spec, p) for p in item.get("parameters", []) + item[method.lower()].get("parameters", [])
    ]
    if not params:
        return []
    lines = ["**Parameters**", "", "| Name | In | Type | Required | Notes |", "|---|---|---|---|---|"]
    for param in params:
        schema = param.get("schema", {})
        notes = _notes(param.get("description", ""), _constraints(schema))
        lines.append(
            f"| `{param['name']}` | {param['in']} | {_cell(_type_of(spec, schema))} | "
            f"{'yes' if param.get('required') else 'no'} | {_cell(notes)} |"
        )
    return lines + [""]


def _body_rows(spec: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    schema = _resolve(spec, schema)
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        if prop.get("readOnly"):
            continue
        target = prop["allOf"][0] if "allOf" in prop and len(prop["allOf"]) == 1 else prop
        notes = _notes(prop.get("description", ""), _constraints(_resolve(spec, target)))
        rows.append(
            f"| `{prefix}{name}` | {_cell(_type_of(spec, prop))} | {'yes' if name in required else 'no'} | "
            f"{_cell(notes)} |"
        )
        if "$ref" in target:
            rows += _body_rows(spec, target, prefix=f"{prefix}{name}.")
    return rows


def _request_body(spec: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    lines = []
    for content_type, content in body.get("content", {}).items():
        required = "required" if body.get("required") else "optional: it may be left out"
        lines += [f"**Request body** (`{content_type}`; {required})", ""]
        rows = _body_rows(spec, content.get("schema", {}))
        if rows:
            lines += ["| Field | Type | Required | Notes |", "|---|---|---|---|", *rows, ""]
    return lines


def _responses(spec: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    lines = ["**Responses**", "", "| Status | Meaning | Body |", "|---|---|---|"]
    codes = sorted((code for code in operation.get("responses", {}) if code.isdigit()), key=int)
    for code in codes:
        response = _resolve(spec, operation["responses"][code])
        content = response.get("content", {})
        body = ", ".join(
            f"`{kind}`"
            + (f" ({_schema_name(value['schema'])})" if value.get("schema", {}).get("$ref") else "")
            if kind != "application/json"
            else _schema_name(value.get("schema", {}))
            for kind, value in content.items()
        )
        lines.append(f"| {code} | {_cell(response.get('description', ''))} | {_cell(body) or '—'} |")
    return lines + [""]


def _checks_sentence(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return ""
    parts = [
        f"{check['as']} → {check['status']}"
        + (" (let through, then refused by the object's state)" if check["status"] == 409 else "")
        for check in checks
    ]
    return " Checked on the running app: " + ", ".join(parts) + "."


def _tag_title(tag: str) -> str:
    return {"carts": "Cart", "wishlists": "Wishlist"}.get(tag, tag.capitalize())


def _intro(data: dict[str, Any]) -> list[str]:
    spec, extras = data["openapi"], data["extras"]
    by_key = {f"{op['method']} {op['path']}": op for op in data["operations"]}

    def first(key: str) -> dict[str, Any] | None:
        examples = by_key.get(key, {}).get("examples") or []
        return examples[0] if examples else None

    lines = [
        "<!-- Generated by scripts/api_reference.py from a running app. Do not edit by hand. -->",
        "",
        f"# {spec['info']['title']} reference (version {spec['info']['version']})",
        "",
        "> **Generated file: do not edit by hand.** `scripts/api_reference.py` wrote it from the OpenAPI",
        "> document of a running app and one real request per operation. Regenerate it with:",
        ">",
        f"> `{REGENERATE}`",
        ">",
        f"> Examples captured on {data['captured_at'][:10]}. In them, tokens are shortened, timestamps",
        f"> show as `{EXAMPLE_TIMESTAMP}`, and ETags and request ids are fixed example values; ids,",
        "> prices and everything else are as the app answered.",
        "",
        "The same document is served at `/api/openapi.json`, and browsable at `/api/docs/`. The live",
        "event streams are described in more depth in [live_events.md](live_events.md).",
        "",
        "## Basics",
        "",
        "### Base URL",
        "",
        f"Every path below is relative to the server, e.g. `{DOC_BASE_URL}` for `make run`",
        "(`PORT=9000 make run` changes the port). Every path answers with or without its final",
        "slash, without a redirect.",
        "Request and response bodies are JSON (`Content-Type: application/json`), except a picture",
        "upload (`multipart/form-data`) and the event streams (`text/event-stream`). Money is a",
        'string with two decimals (`"19.99"`); timestamps are ISO 8601 in UTC with a `Z` suffix.',
        "",
        "### Authentication",
        "",
        "`POST /api/auth/login/` (username or email, and password) answers an access token",
        "(15 minutes) and a refresh token (30 days). Send the access token on every call that needs",
        "a signed-in user:",
        "",
        "```http",
        "Authorization: Bearer <access token>",
        "```",
        "",
        "When it expires (401), `POST /api/auth/refresh/` with the *refresh* token as the bearer token",
        "answers a new pair: the refresh token rotates on every use, and presenting one that was",
        "already used revokes that whole login. `POST /api/auth/logout/` revokes the login's tokens",
        "on every server. Admin accounts are made by an operator (`flask users create-admin`), never",
        "through the API.",
        "",
        "Each operation below says **who may call it**:",
        "",
        "- **Public**: no token.",
        "- **Any signed-in user**: a valid access token; the operation acts on the caller's own data",
        "  (their cart, wishlist, profile, orders).",
        "- **The owner**: a signed-in user, on an object of their own; another user's object is answered",
        "  404 (orders, payments, cart and wishlist lines: its existence stays private) or 403 (reviews).",
        "  Some also accept an admin, as said.",
        "- **Admin only**: a token of a user with the `admin` role; anyone else's is answered 403.",
        "",
        "This is read from the OpenAPI document (an operation's `security`, and the 403 \"Needs the",
        'admin role" that role-restricted operations document) and checked against the running app',
        "while the examples were captured: each protected operation was also called without a token,",
        "with a customer's token (admin-only operations), and, on an object of a customer, with",
        "another customer's token and an admin's; the answers are listed with each operation.",
        "",
        "### Errors",
        "",
        "Every error is `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail` and",
        "the `request_id` of the request (also in its `X-Request-ID` header), plus `errors` per field",
        "for a 422. For example, a product that does not exist:",
        "",
    ]
    for name in ("not_found", "validation", "unauthorized"):
        exchange = extras.get(name)
        if exchange is None:
            continue
        if name == "validation":
            lines += ["", "A body that fails validation (a quantity of 0):", ""]
        if name == "unauthorized":
            lines += ["", "A revoked token (after a logout):", ""]
        lines += _request_block(exchange["request"]) + _response_block(exchange["response"])
    lines += [
        "",
        "The statuses: 400 malformed JSON; 401 missing, invalid, expired or revoked token; 403 not",
        "allowed; 404 not found (or not yours); 405; 409 a conflict with the current state; 413 body",
        "too large; 414 request line too long; 415 not JSON; 422 invalid input; 429 rate-limited;",
        "431 a request header too large; 503 unavailable for a moment. 429 and 503 carry",
        "`Retry-After` (seconds). 414 and 431 come from gunicorn (a request line over 4,094 bytes, a",
        "header over 8,190 bytes or more than 100 of them) or, behind nginx, from nginx (8 KB), before",
        "the app sees the request, and are problems too.",
        "",
        "### Pagination",
        "",
        "Lists take `page` (from 1) and `page_size` (default 20, at most 100) and answer the page as a",
        "JSON array, with the totals in `X-Pagination` and an RFC 8288 `Link` header (first, prev,",
        "next, last):",
        "",
    ]
    listing = first("GET /api/products/")
    if listing:
        lines += _request_block(listing["request"])
        shown = {k: v for k, v in listing["response"]["headers"].items() if k in ("X-Pagination", "Link")}
        lines += ["```http", f"HTTP/1.1 {listing['response']['status']} {listing['response']['reason']}"]
        lines += [f"{name}: {value}" for name, value in shown.items()] + ["```"]
    lines += [
        "",
        "### Rate limits",
        "",
        "Register and login are limited per client address and per account named",
        "(`AUTH_RATE_LIMIT`, 10 a minute by default); their answers carry `X-RateLimit-Limit` and",
        "`X-RateLimit-Remaining` (and a `Retry-After` that matters only on a 429). Over the limit",
        "the answer is 429 problem+json with `Retry-After` in seconds.",
        "The same answer is given for an unknown user and a wrong password.",
        "",
        "### Idempotency-Key",
        "",
        "`POST /api/orders/` and `POST /api/orders/{order_id}/payments/` honour an `Idempotency-Key`",
        "header (up to 255 characters, e.g. a UUID made by the client per purchase attempt). The",
        "first answer is stored for 24 hours per user and key: a retry with the same key and body",
        "gets it again with `Idempotent-Replayed: true` (and makes no second order or payment); the",
        "same key with another body is 422; a retry while the first call still runs is 409. A 503",
        "(try again, with `Retry-After`) is not stored: the retry with the same key runs anew.",
        "",
        "### Caching",
        "",
        "`GET /api/products/`, `GET /api/products/{product_id}/` and `GET /api/categories/` carry an",
        "`ETag` and `Cache-Control: no-cache`: send `If-None-Match` to get a 304 without a body when",
        "nothing changed. Answers to requests with a token, and every `/api/auth/` answer, carry",
        "`Cache-Control: no-store`. Every answer carries `X-Request-ID` (the client's own, if it sent",
        "a valid one) and security headers (`X-Content-Type-Options`, `Content-Security-Policy`, ...),",
        "left out of the examples below.",
        "",
    ]
    return lines


def render_markdown(data: dict[str, Any]) -> str:
    """The Markdown reference of what ``capture`` returned."""
    anchors = Anchors()
    lines = _intro(data)
    for line in lines:
        if line.startswith("#"):
            anchors(line.lstrip("#").strip())
    spec = data["openapi"]
    tags = [tag["name"] for tag in spec.get("tags", [])]
    tags += sorted({op["tag"] for op in data["operations"]} - set(tags))
    descriptions = {tag["name"]: tag.get("description", "") for tag in spec.get("tags", [])}
    # In the document's order: the code's, which reads as a client would use them.
    grouped = {tag: [op for op in data["operations"] if op["tag"] == tag] for tag in tags}
    grouped = {tag: ops for tag, ops in grouped.items() if ops}

    toc = ["## Contents", ""]
    anchors("Contents")
    body: list[str] = []
    for tag, ops in grouped.items():
        title = _tag_title(tag)
        if descriptions.get(tag) and descriptions[tag].lower() != title.lower():
            title += f": {descriptions[tag]}"
        toc.append(f"- [{title}](#{anchors(title)})")
        body += [f"## {title}", ""]
        for op in ops:
            heading = f"{op['method']} {op['path']}"
            toc.append(f"  - [`{heading}`](#{anchors(heading)}): {op['summary']}")
            body += _operation(spec, op)
    return "\n".join(lines + toc + [""] + body).rstrip("\n") + "\n"


def _operation(spec: dict[str, Any], op: dict[str, Any]) -> list[str]:
    operation = spec["paths"][op["path"]][op["method"].lower()]
    lines = [f"### {op['method']} {op['path']}", ""]
    lines += [f"{op['summary']}." if op["summary"] and not op["summary"].endswith(".") else op["summary"], ""]
    if op["description"]:
        lines += [op["description"], ""]
    lines += [f"**Who may call it:** {op['access']['text']}{_checks_sentence(op['checks'])}", ""]
    lines += _parameters(spec, op["path"], op["method"])
    lines += _request_body(spec, operation)
    lines += _responses(spec, operation)
    if op.get("note"):
        lines += [f"Note: {op['note']}", ""]
    if not op["examples"]:
        lines += ["No example was captured for this operation.", ""]
    for index, example in enumerate(op["examples"]):
        lines += [f"**{'Example' if index == 0 else example.get('title', 'Another example')}**", ""]
        lines += _request_block(example["request"]) + _response_block(example["response"]) + [""]
    return lines


# -- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="an app already running (default: start one on a free port)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="the Markdown (default: docs/api.md)"
    )
    parser.add_argument(
        "--json", type=Path, dest="json_path", help="also write the captured data as JSON here"
    )
    parser.add_argument("--no-markdown", action="store_true", help="write only --json")
    parser.add_argument("--admin-username", help="with --base-url: an existing admin account")
    parser.add_argument("--admin-password", help="with --base-url: its password")
    parser.add_argument("--keep", action="store_true", help="keep the temporary instance folder")
    args = parser.parse_args(argv)
    if bool(args.admin_username) != bool(args.admin_password):
        parser.error("--admin-username and --admin-password go together")

    # A SIGTERM unwinds like an error, so whatever was started is stopped.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    if args.base_url:
        admin = (args.admin_username, args.admin_password) if args.admin_username else None
        data = capture(args.base_url, admin=admin)
    else:
        with local_app(keep=args.keep) as app:
            data = capture(app.base_url, admin=app.admin)
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {args.json_path}")
    if not args.no_markdown:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(render_markdown(data))
        log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
