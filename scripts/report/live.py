"""The running system the report is captured from, started and stopped by the build.

On PostgreSQL + Redis when both answer (the database ``ecommerce_report``, created if missing,
and Redis database 4), else on the embedded defaults (SQLite in a temporary folder, in-process
cache). Migrated with ``flask db upgrade`` and seeded with ``flask seed``, then served by gunicorn
with ``gunicorn.conf.py`` as ``make serve`` does, beside a Huey worker:

- ``app``: the normal configuration, the instance every capture talks to;
- ``uncached``: the same with ``CACHE_TYPE=NullCache``, for the cached vs uncached measurement;
- ``worker``: the background jobs (payments, order emails), its job metrics on a port of its own;
- ``prometheus``: started later by ``monitoring.py`` through ``spawn``.

Ports come from 8800-8899 (Prometheus: 9290-9299). Every process runs in a session of its own,
so its PID is its process group; ``stop`` signals exactly those groups, also on error.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

from scripts.report import ROOT
from scripts.report.settings import Settings

BIN = ROOT / ".venv" / "bin"
APP_PORTS = range(8800, 8900)
PROMETHEUS_PORTS = range(9290, 9300)
HOST = "127.0.0.1"

# Settings of the calling shell that belong to one process or one deployment, not to this one.
_INHERITED = (
    "APP_ENV",
    "DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "REDIS_URL",
    "INSTANCE_PATH",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "FLASK_DEBUG",
    "HOST",
    "PORT",
    "INSTANCE_NAME",
    "CACHE_TYPE",
    "WORKER_METRICS_PORT",
    "WORKER_METRICS_HOST",
    "TRUSTED_PROXY_HOPS",
    "MAIL_SERVER",
)


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"report: [{time.monotonic() - _STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


@cache
def bench() -> ModuleType:
    """``benchmarks/cache_vs_db.py``, imported by path: the project's own way to start an
    instance, warm it, count its cache hits and stop it."""
    path = ROOT / "benchmarks" / "cache_vs_db.py"
    spec = importlib.util.spec_from_file_location("report_cache_vs_db", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port(candidates: range, taken: set[int]) -> int:
    for port in candidates:
        if port not in taken and port_is_free(port):
            taken.add(port)
            return port
    raise RuntimeError(f"no free port in {candidates.start}-{candidates.stop - 1} on {HOST}")


def wait_for_url(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited ({process.returncode}) before {url} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.2)


@dataclass
class Backend:
    kind: str  # "postgresql" or "embedded"
    database_url: str
    redis_url: str | None

    @property
    def description(self) -> str:
        if self.kind == "postgresql":
            database = self.database_url.rsplit("/", 1)[-1]
            return (
                f"PostgreSQL (database {database}) and Redis (database {self.redis_url.rsplit('/', 1)[-1]})"
            )
        return "the embedded defaults: SQLite, in-process cache, SQLite job queue"


def _reachable(settings: Settings) -> str | None:
    """Why PostgreSQL or Redis cannot be used, or None when both answer."""
    import psycopg2
    import redis
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    try:
        psycopg2.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.Error as error:
        return f"PostgreSQL: {str(error).strip()}"
    try:
        redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis: {error}"
    return None


def choose_backend(settings: Settings, folder: Path) -> Backend:
    problem = _reachable(settings)
    if problem is None:
        return Backend("postgresql", settings.database_url, settings.redis_url)
    log(f"{problem}; running on the embedded defaults instead")
    return Backend("embedded", f"sqlite:///{folder / 'ecommerce.db'}", None)


def _create_database(url_text: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(url_text)
    admin = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            # The report's own database, made afresh as `make test` makes ecommerce_test: each
            # build captures the same seeded shop, not what the last builds left in it.
            cursor.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{url.database}"')
    finally:
        admin.close()


@dataclass
class LiveSystem:
    """Everything the build starts; use as a context manager (``stop`` runs on the way out)."""

    settings: Settings
    folder: Path  # temporary: databases, metrics files, Prometheus's storage, logs
    backend: Backend | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: set[int] = field(default_factory=set)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    app_url: str = ""
    uncached_url: str = ""
    worker_metrics_url: str = ""
    app_port: int = 0
    worker_port: int = 0

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    def __enter__(self) -> LiveSystem:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- processes ---------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``argv`` in a session of its own, its output in logs/NAME.log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as output:
            process = subprocess.Popen(
                argv,
                env=env or self.env,
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes.append((name, process))
        log(f"started {name} (pid {process.pid})")
        return process

    def stop(self) -> None:
        """SIGTERM to each process group started here, newest first; SIGKILL after 30 s."""
        while self.processes:
            name, process = self.processes.pop()
            if process.poll() is None:
                log(f"stopping {name} (pid {process.pid})")
            bench().stop(process)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- start -------------------------------------------------------------------------------

    def flask(self, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "flask"), *args], env=self.env, cwd=ROOT, capture_output=True, text=True
        )
        with open(self.logs / "setup.log", "a") as setup_log:
            setup_log.write(f"$ flask {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.backend = choose_backend(self.settings, self.folder)
        instance = self.folder / "instance"
        instance.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in _INHERITED}
        env.update(
            {
                "FLASK_APP": "wsgi.py",
                "APP_ENV": "development",
                "DATABASE_URL": self.backend.database_url,
                "INSTANCE_PATH": str(instance),
                "LOG_LEVEL": "WARNING",
                "RATELIMIT_ENABLED": "false",
                "SANDBOX_GATEWAY_PATH": str(instance / "sandbox_gateway.db"),
                "MAIL_FOLDER": str(instance / "mail"),
                "MEDIA_ROOT": str(instance / "media"),
                "HUEY_SQLITE_PATH": str(instance / "huey.db"),
                "CACHE_KEY_PREFIX": "ecommerce-report:",
                "RATELIMIT_KEY_PREFIX": "ecommerce-report-rl",
                "HUEY_NAME": "ecommerce-report",
                # One worker per core with Redis (gunicorn.conf.py's own rule), one without.
                "WEB_CONCURRENCY": str(os.cpu_count() or 1) if self.backend.redis_url else "1",
            }
        )
        if self.backend.redis_url:
            env["REDIS_URL"] = self.backend.redis_url
        self.env = env

        log(f"backend: {self.backend.description}")
        if self.backend.kind == "postgresql":
            _create_database(self.backend.database_url)
        self.flask("db", "upgrade")
        log(f"seeding {self.settings.seed_products} products")
        self.flask("seed", "--products", str(self.settings.seed_products))

        self.app_port = free_port(APP_PORTS, self.ports)
        uncached_port = free_port(APP_PORTS, self.ports)
        self.worker_port = free_port(APP_PORTS, self.ports)
        self.worker_metrics_url = f"http://{HOST}:{self.worker_port}/metrics"

        worker = self.spawn(
            "worker",
            [str(BIN / "huey_consumer"), "ecommerce.worker.huey", "-k", "thread", "-w", "2"],
            {**env, "WORKER_METRICS_PORT": str(self.worker_port), "WORKER_METRICS_HOST": HOST},
        )
        self.app_url = self._start_app("app", self.app_port, {})
        self.uncached_url = self._start_app(
            "uncached", uncached_port, {"CACHE_TYPE": "NullCache", "LOCAL_CACHE_SECONDS": "0"}
        )
        wait_for_url(self.worker_metrics_url, 60, worker)

    def _start_app(self, name: str, port: int, settings: dict[str, str]) -> str:
        metrics = self.folder / "metrics" / name
        metrics.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "HOST": HOST,
            "INSTANCE_NAME": f"report-{name}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            **settings,
        }
        # benchmarks/cache_vs_db.py's start_instance: gunicorn --config gunicorn.conf.py wsgi:app
        # in a session of its own, returned once /readyz answers 200 (it stops it otherwise).
        log(f"starting {name} on {HOST}:{port}")
        try:
            process = bench().start_instance(
                f"report-{name}",
                port,
                env,
                log_path=self.logs / f"{name}.log",
                workers=env["WEB_CONCURRENCY"],
            )
        except SystemExit as failed:
            raise RuntimeError(f"{failed}\n{self.log_tail(name)}") from None
        self.processes.append((name, process))
        return f"http://{HOST}:{port}"
