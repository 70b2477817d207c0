"""Run the real gunicorn, the Huey consumer and the flask CLI as subprocesses on 127.0.0.1, stopped
by PID; and a real SMTP server (aiosmtpd) in this process."""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import requests
from aiosmtpd.controller import Controller

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = PROJECT_ROOT / ".venv" / "bin"
HOST = "127.0.0.1"
STARTED = "Huey consumer started with"

# Settings of the surrounding shell that would change what the subprocess runs.
_INHERITED_SETTINGS = (
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
)


def clean_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _INHERITED_SETTINGS}
    env.update({"FLASK_APP": "wsgi.py", "HOST": HOST, **settings})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.base_url + path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.post(self.base_url + path, **kwargs)


@contextmanager
def gunicorn(env: dict[str, str], log_path: Path, boot_timeout: float = 30) -> Iterator[Server]:
    """``gunicorn --config gunicorn.conf.py wsgi:app`` on a free port until /healthz answers."""
    port = free_port()
    env = {**env, "PORT": str(port)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://{HOST}:{port}", log_path)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {process.returncode}:\n{server.log()}")
            try:
                return server.get("/healthz", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False  # not listening yet, or no worker has taken the connection yet

        wait_until(healthy, boot_timeout, message="gunicorn's /healthz")
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (gunicorn's graceful stop) by PID, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``.venv/bin/flask <args>`` in the project root; fail with its output if it fails."""
    result = subprocess.run(
        [str(BIN / "flask"), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


# -- the SMTP server ------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class MailServer:
    """aiosmtpd on 127.0.0.1:<port>, collecting every message; stopped and started on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self._lock:
            self._received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        assert self._controller is None
        controller = Controller(self, hostname=HOST, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Received]:
        with self._lock:
            return [r for r in self._received if address in r.rcpt_tos]


# -- the consumer ---------------------------------------------------------------------------


class Consumer:
    """The worker process; each start logs to a file of its own."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    def start(self, timeout: float = 30) -> None:
        assert not self.alive
        self.starts += 1
        self.log_path = self.log_dir / f"consumer-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "huey_consumer"), "ecommerce.worker.huey", "-k", "thread", "-w", "4"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the consumer exited with {self.process.returncode}:\n{self.log()}")
            return STARTED in self.log()

        wait_until(started, timeout, message="the consumer to start")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it has not exited within the deadline."""
        if self.process is not None:
            stop(self.process, timeout=15)

    def kill(self) -> int:
        self.process.kill()
        return self.process.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def mark(self) -> tuple[Path | None, int]:
        return self.log_path, len(self.log())

    def since(self, mark: tuple[Path | None, int]) -> str:
        path, offset = mark
        return self.log()[offset:] if path == self.log_path else self.log()

    def completed(self, task: str, mark: tuple[Path | None, int]) -> set[str]:
        """Ids of the ``task`` jobs this consumer finished without an error since ``mark``."""
        # "ecommerce.tasks.<task>: <id>[ 8 retries][ @eta] executed in 0.012s"
        return set(re.findall(rf"\b{task}: ([0-9a-f-]{{36}})[^\n]* executed in", self.since(mark)))
