"""Load balancers side by side: nginx (least_conn, round robin) and HAProxy (leastconn, roundrobin).

Brings up `scripts/stack.sh` on ports, a database and a Redis database of its own (or reuses it
when it already runs there), and puts four front ends in front of the same two app instances
(gunicorn + gevent, cores / 2 workers each, as stack.sh sizes them; docs/load_balancing.md's
figures were taken with WEB_CONCURRENCY=2, 2 workers each):

- **nginx least_conn** and **nginx round robin**: two extra nginx processes whose configuration is
  the stack's own rendered nginx.conf (the shipped one), with their own port, PID file, logs, temp
  folders and cache, and a compact access log; the round robin copy only loses its
  ``least_conn;`` line;
- **HAProxy leastconn** and **HAProxy roundrobin**: Debian's HAProxy (``apt-get install haproxy``,
  its system service left alone), run in the foreground by this script with a generated
  configuration (HTTP mode, keep-alive to the instances, active checks of ``/healthz``, retries
  with the same rules as nginx's ``proxy_next_upstream``: GETs on any failure, other methods only
  when the connection was refused). ``--write-haproxy-example`` writes the same template, with
  production ports and a stats page, to docs/haproxy.cfg.example.

Then it measures, alternating the targets in every round, medians over the rounds:

1. **overhead**: cached product reads alone (``wrk -t2 -c64``, random products of a warm hot set),
   through each front end and straight to one instance for the ratio; with the front
   end's own CPU time per request;
2. **mixed**: fast and slow requests at once: wrk reads cached products on ``--read-connections``
   connections while ``--buyers`` buyers (threads, one keep-alive connection each) loop "add one
   unit to the cart, check out" on products of their own. Throughput and p50/p99 of each kind,
   and how the requests split between the instances (each instance's own ``/metrics`` counters,
   before and after);
   ``--only checkouts`` (not in the default set) runs the buyers alone, without the reads, to
   tell what the algorithm does to checkouts by itself from what it does to them beside reads;
3. **failover**: the same mixed load plus an open-loop probe (``--probe-rate`` new connections a
   second, each one GET, recording which instance answered and how long it took), while one
   instance
   - **dies**: SIGKILL to app2's gunicorn master and workers (by PID, from the stack's PID file),
     and ``--dead-seconds`` later it is started again the way stack.sh starts it (same command,
     same environment, read from /proc before the kill) and its PID file rewritten;
   - **hangs**: SIGSTOP to the same processes for ``--hang-seconds``, then SIGCONT.

   Counted: the requests that failed as the client saw them (wrk's non-2xx and socket errors, the
   buyers' errors, the probes' errors), the requests the balancer still sent to the instance
   (its own access log, with every address it tried; HAProxy's retries), when HAProxy marked the
   instance down and up again (its stats socket, polled every 100 ms), when the instance served
   again after it was ready, and whether every order the buyers placed matches a 201 they saw.

Every front end is restarted before its failover runs, so none starts with the failure counts
of an earlier one. The load generators share the 2 cores with everything else; their CPU time
(wrk's from wait4, this process's own) is reported beside the figures. The figures are written as
JSON to docs/load_balancing.json (``--json``), and printed as tables.

    .venv/bin/python benchmarks/load_balancers.py
    .venv/bin/python benchmarks/load_balancers.py --rounds 5 --mix-seconds 15 --failover-rounds 2
    .venv/bin/python benchmarks/load_balancers.py --only overhead,mixed --keep   # stack left up
    .venv/bin/python benchmarks/load_balancers.py --write-haproxy-example        # and exit

Needs wrk and haproxy (``apt-get install -y wrk haproxy``), nginx and prometheus (stack.sh installs
those), PostgreSQL and Redis on 127.0.0.1. Redis database 3 is flushed when the stack is started
here. Stop a kept stack with
``STACK_DIR=run/lb-stack STACK_PORT=8180 ... scripts/stack.sh down`` (``--down`` does it too).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import http.client
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_vs_db import LUA_RANDOM_PRODUCT, ROOT, ensure_wrk, parse_wrk  # noqa: E402
from checkout import Client  # noqa: E402

STACK_DIR = ROOT / "run" / "lb-stack"
STACK_ENV = {
    "STACK_PORT": "8180",
    "STACK_APP_PORTS": "8101 8102",
    "STACK_WORKER_METRICS_PORT": "9191",
    "STACK_PROMETHEUS_PORT": "9190",
    "STACK_DIR": str(STACK_DIR),
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/ecommerce_lb",
    "REDIS_URL": "redis://127.0.0.1:6379/3",
    # Rate limits off (the buyers log in from one address), warnings only, day-long tokens.
    "RATELIMIT_ENABLED": "false",
    "LOG_LEVEL": "WARNING",
    "JWT_ACCESS_TOKEN_EXPIRES": "86400",
}
INSTANCES = {"app1": 8101, "app2": 8102}
VICTIM = "app2"
LB_DIR = STACK_DIR / "lb"
PASSWORD = "lb-bench-password"
PLENTY = 1_000_000
SLOW = 1.0  # seconds: a probe slower than this was held by a stopped instance
HAPROXY_SERVER_OPTIONS = "check inter 1s fastinter 250ms fall 3 rise 2"


@dataclass(frozen=True)
class Frontend:
    name: str
    kind: str  # "nginx" or "haproxy"
    algorithm: str  # nginx: least_conn | round_robin; HAProxy: the balance keyword
    port: int
    tag: str


FRONTENDS = [
    Frontend("nginx least_conn", "nginx", "least_conn", 8181, "nginx-lc"),
    Frontend("nginx round robin", "nginx", "round_robin", 8182, "nginx-rr"),
    Frontend("HAProxy leastconn", "haproxy", "leastconn", 8183, "haproxy-lc"),
    Frontend("HAProxy roundrobin", "haproxy", "roundrobin", 8184, "haproxy-rr"),
]


# -- processes ------------------------------------------------------------------------------


def proc_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(") ", 1)[1].split()


def start_time(pid: int) -> str | None:
    fields = proc_fields(pid)
    return fields[19] if fields else None


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_fields(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def cpu_seconds(pgids: list[int]) -> float:
    """CPU time (user + system) of every live process of these process groups."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pgid in pgids:
        for pid in group_members(pgid):
            fields = proc_fields(pid)
            if fields:
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def instance_leader(name: str) -> int:
    """The PID of instance ``name``'s gunicorn master, from the stack's PID file ("PID STARTTIME"),
    only while that very process still runs."""
    pid, started = (STACK_DIR / "pids" / f"{name}.pid").read_text().split()
    if start_time(int(pid)) != started:
        raise SystemExit(f"{name}: the process of its PID file ({pid}) is not running")
    return int(pid)


def signal_group(pgid: int, sig: int) -> list[int]:
    members = group_members(pgid)
    for pid in members:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return members


def get(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def wait_until(predicate, seconds: float, interval: float = 0.05) -> float | None:
    """Polls ``predicate`` until it is true; returns the time it became true, None on timeout."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval)
    return None


# -- the stack ------------------------------------------------------------------------------


def stack(command: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "stack.sh"), command],
        cwd=ROOT,
        env={**os.environ, **STACK_ENV},
        check=check,
        text=True,
        capture_output=quiet,
    )


def ensure_stack() -> bool:
    """Reuses the stack when it runs in STACK_DIR, else starts it; True when started here."""
    status = stack("status", check=False, quiet=True)
    if status.returncode == 0 and all(get(f"http://127.0.0.1:{p}/readyz") == 200 for p in INSTANCES.values()):
        print("reusing the stack in run/lb-stack", file=sys.stderr)
        return False
    if "running" in status.stdout or "exited" in status.stdout:
        stack("down")
    subprocess.run(["redis-cli", "-u", STACK_ENV["REDIS_URL"], "flushdb"], check=True, capture_output=True)
    stack("up")
    return True


def connect_db():
    import psycopg2

    connection = psycopg2.connect(STACK_ENV["DATABASE_URL"])
    connection.autocommit = True
    return connection


# -- front ends -----------------------------------------------------------------------------


def nginx_config(frontend: Frontend, base: str) -> str:
    """The stack's rendered nginx.conf, on the front end's own port, files and algorithm."""
    tag = frontend.tag

    def sub(pattern: str, replacement: str, text: str) -> str:
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        if count == 0:
            raise SystemExit(f"{tag}: no match for {pattern!r} in {STACK_DIR / 'nginx.conf'}")
        return text

    text = sub(r"^(\s*listen 127\.0\.0\.1:)\d+;", rf"\g<1>{frontend.port};", base)
    text = sub(r"^pid nginx\.pid;", f"pid lb/{tag}.pid;", text)
    text = sub(r"^error_log logs/nginx-error\.log", f"error_log logs/{tag}-error.log", text)
    text = sub(r"(_temp_path) tmp-", rf"\1 {tag}-tmp-", text)
    text = sub(r"proxy_cache_path assets-cache ", f"proxy_cache_path {tag}-assets-cache ", text)
    # Every request with each address tried and its status, to the millisecond.
    text = sub(
        r"^(\s*)access_log logs/nginx-access\.log stack_json;",
        r"\1log_format lb_timeline '$msec $request_method $status $request_time "
        r'"$upstream_addr" "$upstream_status"' + "';\n"
        rf"\1access_log logs/{tag}-access.log lb_timeline;",
        text,
    )
    if frontend.algorithm == "round_robin":
        text = sub(r"^\s*least_conn;\n", "", text)
    return text


def haproxy_config(
    *,
    port: int,
    balance: str,
    servers: dict[str, int],
    stats_socket: str | None = None,
    log: bool = True,
    stats_port: int | None = None,
    header: str = "",
) -> str:
    """HAProxy in front of ``servers``, with the same rules as the shipped nginx.conf where HAProxy
    has them (timeouts, retries, keep-alive to the instances, X-Upstream), plus active checks."""
    lines = [
        header.rstrip("\n"),
        "global",
        "    nbthread 2",
        "    maxconn 8192                  # nginx: worker_connections 8192",
    ]
    if stats_socket:
        lines.append(f"    stats socket {stats_socket} mode 600 level admin")
    if log:
        lines.append("    log stdout format raw local0 info")
    lines += [
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    option forwardfor",
        "    timeout connect 2s            # nginx: proxy_connect_timeout 2s",
        "    timeout client 65s            # nginx: keepalive_timeout 65s (client side)",
        "    timeout http-request 60s      # nginx: client_header_timeout (60s default)",
        "    timeout http-keep-alive 65s",
        "    timeout server 35s            # nginx: proxy_read_timeout 35s",
        "    timeout queue 35s",
        "    timeout check 1s",
    ]
    if log:
        lines += [
            "    log global",
            "    option dontlognull",
            '    log-format "%[date(0,ms)] %HM %ST %Ta %s %rc"',
        ]
    lines += [
        "",
        "frontend shop",
        f"    bind 127.0.0.1:{port}",
        "    http-response set-header X-Upstream %[srv_name]",
        "    default_backend app",
        "",
        "backend app",
        f"    balance {balance}",
        "    option httpchk GET /healthz",
        "    http-check expect status 200",
        "    # A failed attempt is tried once more, on the other instance (nginx: proxy_next_upstream",
        "    # error timeout http_502 http_503; proxy_next_upstream_tries 2). Only GET/HEAD are",
        "    # retried after the request was sent; any method when the connection was refused.",
        "    retries 1",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 502 503",
        "    http-request disable-l7-retry unless METH_GET",
        "    # Idle connections to the instances are kept and shared (the default, safe).",
        "    http-reuse safe",
        f"    default-server {HAPROXY_SERVER_OPTIONS}",
    ]
    lines += [f"    server {name} 127.0.0.1:{server_port}" for name, server_port in servers.items()]
    if stats_port:
        lines += [
            "",
            "# The stats page and Prometheus metrics, on their own port (keep it private).",
            "frontend stats",
            f"    bind 127.0.0.1:{stats_port}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    stats enable",
            "    stats uri /stats",
            "    stats refresh 5s",
        ]
    return "\n".join(line for line in lines if line is not None).lstrip("\n") + "\n"


@dataclass
class LogLine:
    end: float  # epoch seconds
    duration: float  # seconds
    method: str
    status: int
    tried: tuple[str, ...]  # instances tried, in order ("?" for one HAProxy does not name)
    served: str | None  # the instance that answered, None when none did


class Running:
    """One front end's process (in a session of its own) and its files."""

    def __init__(self, frontend: Frontend, nginx: str, haproxy: str) -> None:
        self.frontend, self.nginx, self.haproxy = frontend, nginx, haproxy
        self.process: subprocess.Popen | None = None
        self.config = LB_DIR / f"{frontend.tag}.conf"
        self.socket = LB_DIR / f"{frontend.tag}.sock"
        self.pid_file = LB_DIR / f"{frontend.tag}.pid"
        if frontend.kind == "nginx":
            self.log = STACK_DIR / "logs" / f"{frontend.tag}-access.log"
        else:
            self.log = STACK_DIR / "logs" / f"{frontend.tag}.log"
        self.offset = 0

    def write_config(self) -> None:
        LB_DIR.mkdir(parents=True, exist_ok=True)
        if self.frontend.kind == "nginx":
            text = nginx_config(self.frontend, (STACK_DIR / "nginx.conf").read_text())
        else:
            text = haproxy_config(
                port=self.frontend.port,
                balance=self.frontend.algorithm,
                servers=INSTANCES,
                stats_socket=str(self.socket),
            )
        self.config.write_text(text)
        if self.frontend.kind == "nginx":
            command = [self.nginx, "-t", "-q", "-c", str(self.config), "-p", f"{STACK_DIR}/"]
            command += ["-e", str(STACK_DIR / "logs" / f"{self.frontend.tag}-error.log")]
        else:
            command = [self.haproxy, "-c", "-q", "-f", str(self.config)]
        checked = subprocess.run(command, capture_output=True, text=True)
        if checked.returncode != 0:
            raise SystemExit(f"{self.frontend.tag}: configuration check failed:\n{checked.stderr}")

    def start(self) -> None:
        self.write_config()
        log = open(STACK_DIR / "logs" / f"{self.frontend.tag}-process.log", "a")  # noqa: SIM115
        if self.frontend.kind == "nginx":
            command = [self.nginx, "-c", str(self.config), "-p", f"{STACK_DIR}/"]
            command += ["-e", str(STACK_DIR / "logs" / f"{self.frontend.tag}-error.log"), "-g", "daemon off;"]
            stdout = log
        else:
            # -db: foreground; its request log goes to stdout, i.e. to self.log.
            command = [self.haproxy, "-db", "-f", str(self.config)]
            stdout = open(self.log, "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=log, start_new_session=True
        )
        self.pid_file.write_text(f"{self.process.pid} {start_time(self.process.pid)}\n")
        url = f"http://127.0.0.1:{self.frontend.port}/healthz"
        if wait_until(lambda: get(url, 1) == 200, 15, 0.1) is None:
            self.stop()
            raise SystemExit(f"{self.frontend.name} did not answer on port {self.frontend.port}")
        if self.frontend.kind == "haproxy" and wait_until(self.all_up, 10, 0.1) is None:
            raise SystemExit(f"{self.frontend.name}: its servers are not all UP: {self.server_status()}")

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT if self.frontend.kind == "nginx" else signal.SIGUSR1)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        if wait_until(lambda: not group_members(pgid), 5) is None:
            signal_group(pgid, signal.SIGKILL)
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cpu(self) -> float:
        return cpu_seconds([self.process.pid]) if self.process else 0.0

    # HAProxy's view of its servers (stats socket).
    def server_status(self) -> dict[str, str]:
        if self.frontend.kind != "haproxy":
            return {}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return {
            row["svname"]: row["status"]
            for row in csv.DictReader(io.StringIO(text))
            if row.get("pxname") == "app" and row.get("svname") in INSTANCES
        }

    def all_up(self) -> bool:
        status = self.server_status()
        return bool(status) and all(value.startswith("UP") and "/" not in value for value in status.values())

    # The request log, from the mark on.
    def mark(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0

    def lines(self) -> list[LogLine]:
        with open(self.log, "rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        parse = self._nginx_line if self.frontend.kind == "nginx" else self._haproxy_line
        return [line for line in map(parse, text.splitlines()) if line is not None]

    @staticmethod
    def _nginx_line(text: str) -> LogLine | None:
        match = re.match(r'^(\d+\.\d+) (\S+) (\d+) ([\d.]+) "([^"]*)" "([^"]*)"', text)
        if not match:
            return None
        end, method, status, duration, addresses, statuses = match.groups()
        names = {str(port): name for name, port in INSTANCES.items()}
        tried = tuple(names.get(port, "?") for port in re.findall(r":(\d+)", addresses))
        codes = re.findall(r"\d{3}", statuses)
        served = tried[-1] if tried and codes and int(codes[-1]) < 500 else None
        return LogLine(float(end), float(duration), method, int(status), tried, served)

    @staticmethod
    def _haproxy_line(text: str) -> LogLine | None:
        match = re.match(r"^(\d{13}) (\S+) (-?\d+) (-?\d+) (\S+) \+?(-?\d+)", text)
        if not match:
            return None
        end, method, status, active, server, retries = match.groups()
        server = server.rsplit("/", 1)[-1]
        tried = (("?",) if int(retries) > 0 else ()) + ((server,) if server in INSTANCES else ())
        served = server if server in INSTANCES and 0 < int(status) < 500 else None
        return LogLine(int(end) / 1000, max(int(active), 0) / 1000, method, int(status), tried, served)


class StatusPoller(threading.Thread):
    """HAProxy's state of the victim, every 100 ms: [(time, status)] at each change."""

    def __init__(self, running: Running) -> None:
        super().__init__(daemon=True)
        self.running, self.changes, self.stopping = running, [], threading.Event()

    def run(self) -> None:
        last = None
        while not self.stopping.is_set():
            try:
                status = self.running.server_status().get(VICTIM, "?")
            except OSError:
                status = "?"
            if status != last:
                self.changes.append((time.time(), status))
                last = status
            self.stopping.wait(0.1)

    def first(self, after: float, prefix: str) -> float | None:
        """When the status first started with ``prefix`` (and was no transition) after ``after``."""
        for moment, status in self.changes:
            if moment >= after and status.startswith(prefix) and "/" not in status:
                return moment
        return None


# -- load -----------------------------------------------------------------------------------


class Wrk:
    """wrk in the background; result() waits for it, with its own CPU time (wait4)."""

    def __init__(self, wrk: str, port: int, script: Path, connections: int, seconds: float) -> None:
        self.out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        command = [wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "60s"]
        command += ["--latency", "-s", str(script), f"http://127.0.0.1:{port}/"]
        self.process = subprocess.Popen(command, stdout=self.out, stderr=subprocess.STDOUT)

    def result(self) -> dict[str, float]:
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.out.seek(0)
        text = self.out.read()
        if self.process.returncode != 0:
            raise SystemExit(f"wrk failed ({self.process.returncode}):\n{text}")
        result = parse_wrk(text)
        socket_errors = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
        )
        result["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0
        result["requests"] = float(re.search(r"(\d+) requests in", text).group(1))
        maximum = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
        result["max"] = float(maximum.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[maximum.group(2)]
        result["cpu_s"] = usage.ru_utime + usage.ru_stime
        return result


@dataclass
class Buyer:
    username: str
    token: str
    user_id: int
    product_id: int


@dataclass
class CheckoutResult:
    orders: int = 0  # 201s seen
    in_window: int = 0  # 201s that returned before the deadline
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[max(0, int(fraction * len(ordered) + 0.999999) - 1)] * 1000


class Checkouts:
    """Every buyer loops on its own keep-alive connection: add one unit to the cart, check out."""

    def __init__(self, port: int, buyers: list[Buyer], seconds: float) -> None:
        self.port, self.buyers, self.seconds = port, buyers, seconds
        self.result, self.lock = CheckoutResult(), threading.Lock()
        self.deadline = 0.0
        self.threads = [threading.Thread(target=self.loop, args=(b,), daemon=True) for b in buyers]

    def start(self) -> None:
        self.deadline = time.perf_counter() + self.seconds
        for thread in self.threads:
            thread.start()

    def loop(self, buyer: Buyer) -> None:
        client = Client(self.port, buyer.token)
        local = CheckoutResult()

        def error(kind: str) -> None:
            local.errors[kind] = local.errors.get(kind, 0) + 1

        while time.perf_counter() < self.deadline:
            status, _ = client.request(
                "POST", "/api/cart/items/", {"product_id": buyer.product_id, "quantity": 1}
            )
            if status not in (200, 201):
                error(f"cart {status or 'no answer'}")
                time.sleep(0.05)
                continue
            started = time.perf_counter()
            status, _ = client.request("POST", "/api/orders/", {})
            ended = time.perf_counter()
            if status == 201:
                local.orders += 1
                local.in_window += ended <= self.deadline
                local.latencies.append(ended - started)
            else:
                error(f"checkout {status or 'no answer'}")
                time.sleep(0.05)
        client.close()
        with self.lock:
            self.result.orders += local.orders
            self.result.in_window += local.in_window
            self.result.latencies += local.latencies
            for kind, count in local.errors.items():
                self.result.errors[kind] = self.result.errors.get(kind, 0) + count

    def join(self) -> CheckoutResult:
        for thread in self.threads:
            thread.join(self.seconds + 120)
        return self.result


@dataclass
class Probe:
    sent: float
    latency: float
    status: int | None
    upstream: str | None


class Probes(threading.Thread):
    """Open loop: ``rate`` GETs a second, each on a new connection, whatever the earlier ones do."""

    def __init__(self, port: int, rate: float, seconds: float, hot_set: int) -> None:
        super().__init__(daemon=True)
        self.port, self.rate, self.seconds, self.hot_set = port, rate, seconds, hot_set
        self.results: list[Probe] = []
        self.lock = threading.Lock()
        self.workers: list[threading.Thread] = []

    def one(self, product_id: int) -> None:
        sent = time.time()
        status = upstream = None
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            connection.request("GET", f"/api/products/{product_id}/")
            response = connection.getresponse()
            response.read()
            status, upstream = response.status, response.getheader("X-Upstream")
            connection.close()
        except (OSError, http.client.HTTPException):
            pass
        with self.lock:
            self.results.append(Probe(sent, time.time() - sent, status, upstream))

    def run(self) -> None:
        started = time.time()
        n = 0
        while (due := started + n / self.rate) < started + self.seconds:
            time.sleep(max(0.0, due - time.time()))
            worker = threading.Thread(target=self.one, args=(random.randint(1, self.hot_set),), daemon=True)
            worker.start()
            self.workers.append(worker)
            n += 1

    def finish(self) -> list[Probe]:
        self.join()
        for worker in self.workers:
            worker.join(65)
        return sorted(self.results, key=lambda probe: probe.sent)


def instance_counts() -> dict[str, dict[str, float]]:
    """Requests each instance counted (its /metrics), by kind: read, checkout, cart, all."""
    counts = {}
    for name, port in INSTANCES.items():
        kinds = {"read": 0.0, "checkout": 0.0, "cart": 0.0, "all": 0.0}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            counts[name] = kinds
            continue
        for line in text.splitlines():
            if not line.startswith("ecommerce_http_request_duration_seconds_count{"):
                continue
            value = float(line.rsplit(" ", 1)[1])
            kinds["all"] += value
            if 'endpoint="products.ProductByIdView"' in line and 'method="GET"' in line:
                kinds["read"] += value
            elif 'endpoint="orders.OrdersView"' in line and 'method="POST"' in line:
                kinds["checkout"] += value
            elif 'endpoint="carts.CartItemsView"' in line and 'method="POST"' in line:
                kinds["cart"] += value
        counts[name] = kinds
    return counts


def shares(before: dict, after: dict, kind: str) -> list[float]:
    deltas = [after[name][kind] - before[name][kind] for name in INSTANCES]
    total = sum(deltas)
    return [round(delta / total, 3) if total else float("nan") for delta in deltas]


def last_order_id(database) -> int:
    with database.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM orders")
        return cursor.fetchone()[0]


def orders_since(database, last_id: int, buyers: list[Buyer]) -> int:
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM orders WHERE id > %s AND user_id = ANY(%s)",
            (last_id, [buyer.user_id for buyer in buyers]),
        )
        return cursor.fetchone()[0]


# -- preparation ----------------------------------------------------------------------------


def prepare(args, database) -> list[Buyer]:
    """Buyers registered and logged in (straight on app1: nginx's flood guard on /api/auth/ would
    refuse a burst of logins from one address), each with a product of its own outside the hot set
    of reads, stocked for good."""
    port = INSTANCES["app1"]
    with database.cursor() as cursor:
        cursor.execute("SELECT id FROM products ORDER BY id DESC LIMIT %s", (args.buyers,))
        products = sorted(row[0] for row in cursor.fetchall())
        if len(products) < args.buyers or products[0] <= args.hot_set:
            raise SystemExit(f"the catalog has too few products for {args.buyers} buyers above the hot set")
        cursor.execute("UPDATE products SET stock_quantity = %s WHERE id = ANY(%s)", (PLENTY, products))
    buyers = []
    for number, product_id in enumerate(products, start=1):
        username = f"lb_buyer_{number:03d}"
        client = Client(port)
        status, body = client.request(
            "POST",
            "/api/auth/register/",
            {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        if status not in (201, 409):
            raise SystemExit(f"register {username}: {status} {body[:200]!r}")
        status, body = client.request(
            "POST", "/api/auth/login/", {"username": username, "password": PASSWORD}
        )
        client.close()
        if status != 200:
            raise SystemExit(f"login {username}: {status} {body[:200]!r}")
        buyers.append(Buyer(username, json.loads(body)["access_token"], 0, product_id))
    with database.cursor() as cursor:
        cursor.execute(
            "SELECT username, id FROM users WHERE username = ANY(%s)", ([b.username for b in buyers],)
        )
        ids = dict(cursor.fetchall())
    for buyer in buyers:
        buyer.user_id = ids[buyer.username]
        Client(port, buyer.token).request("DELETE", "/api/cart/")
    # The hot set in Redis, and in each instance's own per-process copy.
    for product_id in range(1, args.hot_set + 1):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/products/{product_id}/").read()
    return buyers


# -- scenarios ------------------------------------------------------------------------------


def client_cpu(wrk_result: dict[str, float], process_cpu: float, wall: float) -> float:
    return round((wrk_result["cpu_s"] + process_cpu) / wall, 2)


def run_overhead(args, wrk: str, script: Path, running: dict[str, Running], port: int, name: str) -> dict:
    balancer = running.get(name)
    before = instance_counts()
    cpu0, lb0, wall0 = time.process_time(), balancer.cpu() if balancer else 0.0, time.time()
    result = Wrk(wrk, port, script, args.overhead_connections, args.overhead_seconds).result()
    wall = time.time() - wall0
    lb_cpu = (balancer.cpu() - lb0) if balancer else 0.0
    after = instance_counts()
    return {
        "rps": result["rps"],
        "p50_ms": result["p50"],
        "p99_ms": result["p99"],
        "errors": result["errors"] + result["socket_errors"],
        "balancer_cpu_cores": round(lb_cpu / wall, 3),
        "balancer_us_per_request": round(lb_cpu / result["requests"] * 1e6, 1) if balancer else 0.0,
        "client_cpu_cores": client_cpu(result, time.process_time() - cpu0, wall),
        "instance_share": shares(before, after, "read"),
    }


def run_mixed(args, wrk: str, script: Path, running: Running, buyers: list[Buyer], database) -> dict:
    port = running.frontend.port
    before, first_order = instance_counts(), last_order_id(database)
    app_groups = [instance_leader(name) for name in INSTANCES]
    cpu0, lb0, app0, wall0 = time.process_time(), running.cpu(), cpu_seconds(app_groups), time.time()
    checkouts = Checkouts(port, buyers, args.mix_seconds)
    reads = Wrk(wrk, port, script, args.read_connections, args.mix_seconds)
    checkouts.start()
    read = reads.result()
    checkout = checkouts.join()
    wall = time.time() - wall0
    lb_cpu, app_cpu = running.cpu() - lb0, cpu_seconds(app_groups) - app0
    after = instance_counts()
    placed = orders_since(database, first_order, buyers)
    return {
        "read_rps": read["rps"],
        "read_p50_ms": read["p50"],
        "read_p99_ms": read["p99"],
        "read_errors": read["errors"] + read["socket_errors"],
        "checkout_ops": round(checkout.in_window / args.mix_seconds, 1),
        "checkout_p50_ms": round(checkout.percentile(0.5), 1),
        "checkout_p99_ms": round(checkout.percentile(0.99), 1),
        "checkout_errors": sum(checkout.errors.values()),
        "orders_not_seen": placed - checkout.orders,
        "instance_share": shares(before, after, "all"),
        "read_share": shares(before, after, "read"),
        "checkout_share": shares(before, after, "checkout"),
        "balancer_cpu_cores": round(lb_cpu / wall, 3),
        "app_cpu_cores": round(app_cpu / wall, 2),
        "client_cpu_cores": client_cpu(read, time.process_time() - cpu0, wall),
    }


def run_checkouts_only(args, running: Running, buyers: list[Buyer], database) -> dict:
    """The buyers alone, no reads: does the algorithm change checkout throughput by itself?"""
    first_order = last_order_id(database)
    checkout = Checkouts(running.frontend.port, buyers, args.mix_seconds)
    checkout.start()
    result = checkout.join()
    return {
        "checkout_ops": round(result.in_window / args.mix_seconds, 1),
        "checkout_p50_ms": round(result.percentile(0.5), 1),
        "checkout_p99_ms": round(result.percentile(0.99), 1),
        "checkout_errors": sum(result.errors.values()),
        "orders_not_seen": orders_since(database, first_order, buyers) - result.orders,
    }


def restart_victim(command: list[str], environment: dict[str, str], cwd: str) -> int:
    """app2 started again as stack.sh starts it: same command, environment and folder, a session
    of its own, its log appended to, its metrics folder emptied, its PID file rewritten."""
    metrics = Path(environment["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    log = open(STACK_DIR / "logs" / f"{VICTIM}.log", "a")  # noqa: SIM115
    process = subprocess.Popen(
        command,
        env=environment,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    (STACK_DIR / "pids" / f"{VICTIM}.pid").write_text(f"{process.pid} {start_time(process.pid)}\n")
    RESTARTED.append(process)
    return process.pid


RESTARTED: list[subprocess.Popen] = []  # the victim's later incarnations (our children: reaped)
STOPPED: list[int] = []  # the victim's processes while SIGSTOPped (resumed on any exit)


def run_failover(
    args, wrk: str, script: Path, running: Running, buyers: list[Buyer], database, mode: str
) -> dict:
    """``mode`` "kill": SIGKILL app2, restart it ``dead_seconds`` later; "hang": SIGSTOP it for
    ``hang_seconds``. The load runs ``lead`` seconds before and ``tail`` seconds after."""
    outage = args.dead_seconds if mode == "kill" else args.hang_seconds
    tail = args.kill_tail if mode == "kill" else args.hang_tail
    seconds = args.lead + outage + tail
    port = running.frontend.port
    victim_url = f"http://127.0.0.1:{INSTANCES[VICTIM]}/readyz"
    leader = instance_leader(VICTIM)
    environment = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{leader}/environ").read_bytes().decode().split("\0")
        if "=" in item
    )
    command = Path(f"/proc/{leader}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
    cwd = os.readlink(f"/proc/{leader}/cwd")

    running.mark()
    poller = StatusPoller(running) if running.frontend.kind == "haproxy" else None
    if poller:
        poller.start()
    first_order = last_order_id(database)
    cpu0, wall0 = time.process_time(), time.time()
    checkouts = Checkouts(port, buyers, seconds)
    probes = Probes(port, args.probe_rate, seconds, args.hot_set)
    reads = Wrk(wrk, port, script, args.failover_connections, seconds)
    checkouts.start()
    probes.start()
    time.sleep(args.lead)

    t_out = time.time()
    if mode == "kill":
        members = signal_group(leader, signal.SIGKILL)
        if wait_until(lambda: not group_members(leader), 10) is None:
            raise SystemExit(f"{VICTIM} survived SIGKILL: {group_members(leader)}")
        for process in RESTARTED:
            process.poll()
        time.sleep(max(0.0, t_out + outage - time.time()))
        t_back = time.time()
        restart_victim(command, environment, cwd)
        t_ready = wait_until(lambda: get(victim_url, 1) == 200, 60)
    else:
        members = signal_group(leader, signal.SIGSTOP)
        STOPPED[:] = members
        time.sleep(max(0.0, t_out + outage - time.time()))
        t_back = time.time()
        signal_group(leader, signal.SIGCONT)
        STOPPED.clear()
        t_ready = t_back
    read = reads.result()
    checkout = checkouts.join()
    probe_list = probes.finish()
    wall = time.time() - wall0
    if poller:
        time.sleep(0.2)
        poller.stopping.set()
        poller.join()
    placed = orders_since(database, first_order, buyers)
    lines = running.lines()

    def rel(moment: float | None) -> float | None:
        return None if moment is None else round(moment - t_out, 2)

    probes_failed = [p for p in probe_list if p.status is None or p.status >= 500]
    result = {
        "processes_signalled": len(members),
        "outage_s": round(t_back - t_out, 2),
        "read_requests": read["requests"],
        "read_failed": read["errors"] + read["socket_errors"],
        "read_non_2xx": read["errors"],
        "read_socket_errors": read["socket_errors"],
        "read_p99_ms": read["p99"],
        "read_max_ms": read["max"],
        "checkouts": checkout.orders,
        "checkout_failed": sum(checkout.errors.values()),
        "checkout_errors": dict(sorted(checkout.errors.items())),
        "checkout_max_ms": round(max(checkout.latencies, default=0) * 1000, 1),
        "orders_not_seen": placed - checkout.orders,
        "probes": len(probe_list),
        "probes_failed": len(probes_failed),
        "balancer_logged_5xx": sum(1 for line in lines if line.status >= 500),
        "slow_requests": sum(1 for line in lines if line.duration > SLOW),
        "client_cpu_cores": client_cpu(read, time.process_time() - cpu0, wall),
    }
    if mode == "kill":
        # What the balancer sent to the dead instance between the kill and its restart.
        dead = [
            line
            for line in lines
            if t_out <= line.end <= t_back
            and (
                VICTIM in line.tried[:-1]
                or "?" in line.tried
                or (line.tried[-1:] == (VICTIM,) and not line.served)
            )
        ]
        ends = sorted(line.end for line in dead)
        burst_end = None
        for moment in ends:
            if burst_end is not None and moment - burst_end > 1.0:
                break
            burst_end = moment
        served_again = [
            line for line in lines if line.served == VICTIM and line.end - line.duration >= t_back
        ]
        first_served = min((line.end - line.duration for line in served_again), default=None)
        # Sent to the instance after its restart but before it answered /readyz: they wait in its
        # listen queue while it boots (gunicorn binds its socket before the workers load the app).
        booting = [line for line in served_again if t_ready and line.end - line.duration < t_ready]
        result.update(
            {
                "sent_to_dead": len(dead),
                "sent_to_dead_failed": sum(1 for line in dead if line.status >= 500),
                "first_burst_until_s": rel(burst_end),
                "last_sent_to_dead_s": rel(ends[-1] if ends else None),
                "boot_s": round(t_ready - t_back, 2) if t_ready else None,
                "sent_while_booting": len(booting),
                "booting_wait_max_ms": round(max((line.duration for line in booting), default=0) * 1000),
                "served_again_after_ready_s": round(first_served - t_ready, 2)
                if first_served and t_ready
                else None,
                "share_after_return": round(
                    sum(1 for line in lines if line.end > t_ready + 3 and line.served == VICTIM)
                    / max(1, sum(1 for line in lines if line.end > t_ready + 3 and line.served)),
                    3,
                )
                if t_ready
                else None,
            }
        )
    else:
        window = [p for p in probe_list if t_out <= p.sent < t_back]
        stuck = [p for p in window if p.latency > SLOW]
        held = [
            line for line in lines if line.served == VICTIM and t_out <= line.end - line.duration < t_back
        ]
        result.update(
            {
                "probes_in_hang": len(window),
                "probes_held": len(stuck),
                "last_probe_held_s": rel(max((p.sent for p in stuck), default=None)),
                "sent_to_stopped": len(held),
                "last_sent_to_stopped_s": rel(max((line.end - line.duration for line in held), default=None)),
            }
        )
    if poller:
        result["marked_down_s"] = rel(poller.first(t_out, "DOWN"))
        result["marked_up_s"] = rel(poller.first(t_back, "UP"))
        result["marked_up_after_ready_s"] = (
            round(poller.first(t_back, "UP") - t_ready, 2) if poller.first(t_back, "UP") and t_ready else None
        )
    return result


# -- report ---------------------------------------------------------------------------------


def median_dict(samples: list[dict]) -> dict:
    """Medians of every number (and of every element of a list of numbers) over the samples."""
    out = {}
    for key, value in samples[0].items():
        if isinstance(value, bool) or value is None or isinstance(value, str | dict):
            values = [sample[key] for sample in samples]
            out[key] = values[0] if all(v == values[0] for v in values) else values
        elif isinstance(value, list):
            out[key] = [round(statistics.median(s[key][i] for s in samples), 3) for i in range(len(value))]
        else:
            numbers = [s[key] for s in samples if s[key] is not None]
            out[key] = round(statistics.median(numbers), 3) if numbers else None
    return out


def versions(wrk: str, nginx: str, haproxy: str) -> dict[str, str]:
    def first_line(command: list[str], pattern: str) -> str:
        output = subprocess.run(command, capture_output=True, text=True)
        match = re.search(pattern, output.stdout + output.stderr)
        return match.group(1) if match else "?"

    return {
        "nginx": first_line([nginx, "-v"], r"nginx/(\S+)"),
        "haproxy": first_line([haproxy, "-v"], r"version (\S+)"),
        "wrk": first_line([wrk, "-v"], r"wrk (\S+)"),
    }


def print_tables(report: dict) -> None:
    overhead = report.get("overhead")
    if overhead:
        print(f"\ncached reads alone, wrk -t2 -c{report['settings']['overhead_connections']}, medians")
        print(
            f"{'target':22} {'req/s':>7} {'x direct':>8} {'p50 ms':>7} {'p99 ms':>7} {'LB us/req':>9} "
            f"{'LB cores':>8} {'client':>6} {'share app1/app2':>16}"
        )
        for name, row in overhead.items():
            print(
                f"{name:22} {row['rps']:7.0f} {row['ratio']:8.2f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
                f"{row['balancer_us_per_request']:9.1f} {row['balancer_cpu_cores']:8.3f} "
                f"{row['client_cpu_cores']:6.2f} {'/'.join(f'{s:.2f}' for s in row['instance_share']):>16}"
            )
    results = report.get("results")
    if results:
        settings = report["settings"]
        print(
            f"\nmixed: wrk reads on {settings['read_connections']} connections + {settings['buyers']} buyers "
            "(cart + checkout), medians"
        )
        print(
            f"{'front end':20} {'read/s':>7} {'p50':>6} {'p99':>7} {'orders/s':>8} {'p50':>6} {'p99':>7} "
            f"{'errors':>6} {'share all':>10} {'share reads':>11} {'share orders':>12} {'LB cores':>8} "
            f"{'client':>6}"
        )
        for name, row in results.items():
            print(
                f"{name:20} {row['read_rps']:7.0f} {row['read_p50_ms']:6.1f} {row['read_p99_ms']:7.1f} "
                f"{row['checkout_ops']:8.1f} {row['checkout_p50_ms']:6.1f} {row['checkout_p99_ms']:7.1f} "
                f"{row['read_errors'] + row['checkout_errors']:6.0f} "
                f"{'/'.join(f'{s:.2f}' for s in row['instance_share']):>10} "
                f"{'/'.join(f'{s:.2f}' for s in row['read_share']):>11} "
                f"{'/'.join(f'{s:.2f}' for s in row['checkout_share']):>12} "
                f"{row['balancer_cpu_cores']:8.3f} {row['client_cpu_cores']:6.2f}"
            )
    alone = report.get("checkouts_only")
    if alone:
        print(f"\n{report['settings']['buyers']} buyers alone (no reads), medians")
        print(f"{'front end':20} {'orders/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for name, row in alone.items():
            print(
                f"{name:20} {row['checkout_ops']:8.1f} {row['checkout_p50_ms']:8.1f} "
                f"{row['checkout_p99_ms']:8.1f} {row['checkout_errors']:6.0f}"
            )
    failover = report.get("failover")
    if failover:
        print("\nan instance killed (SIGKILL) under load, started again later; medians")
        print(
            f"{'front end':20} {'failed reads':>12} {'failed checkouts':>16} {'probes failed':>13} "
            f"{'sent to dead':>12} {'burst until s':>13} {'last sent s':>11} {'marked down s':>13} "
            f"{'boot s':>6} {'served after ready s':>20} {'sent while booting':>18} {'their max ms':>12}"
        )
        for name, modes in failover.items():
            row = modes.get("kill")
            if row:
                print(
                    f"{name:20} {fmt(row['read_failed']):>12} {fmt(row['checkout_failed']):>16} "
                    f"{fmt(row['probes_failed']):>13} {fmt(row['sent_to_dead']):>12} "
                    f"{fmt(row['first_burst_until_s']):>13} {fmt(row['last_sent_to_dead_s']):>11} "
                    f"{fmt(row.get('marked_down_s')):>13} {fmt(row['boot_s']):>6} "
                    f"{fmt(row['served_again_after_ready_s']):>20} {fmt(row['sent_while_booting']):>18} "
                    f"{fmt(row['booting_wait_max_ms']):>12}"
                )
        print("\nan instance stopped (SIGSTOP) under load, resumed later; medians")
        print(
            f"{'front end':20} {'probes held':>11} {'of':>5} {'last held s':>11} {'sent to stopped':>15} "
            f"{'last sent s':>11} {'read max ms':>11} {'failed':>6} {'marked down s':>13}"
        )
        for name, modes in failover.items():
            row = modes.get("hang")
            if row:
                print(
                    f"{name:20} {fmt(row['probes_held']):>11} {fmt(row['probes_in_hang']):>5} "
                    f"{fmt(row['last_probe_held_s']):>11} {fmt(row['sent_to_stopped']):>15} "
                    f"{fmt(row['last_sent_to_stopped_s']):>11} {fmt(row['read_max_ms']):>11} "
                    f"{fmt(row['read_failed'] + row['checkout_failed'] + row['probes_failed']):>6} "
                    f"{fmt(row.get('marked_down_s')):>13}"
                )


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(fmt(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds of the overhead and mixed scenarios")
    add("--overhead-seconds", type=float, default=5)
    add("--overhead-connections", type=int, default=64)
    add("--mix-seconds", type=float, default=10)
    add("--read-connections", type=int, default=48, help="wrk connections reading in the mixed load")
    add("--buyers", type=int, default=16, help="buyers checking out in the mixed and failover loads")
    add("--hot-set", type=int, default=800, help="cached products the reads pick from")
    add("--failover-rounds", type=int, default=2)
    add("--failover-connections", type=int, default=32, help="wrk connections during the failover runs")
    add("--probe-rate", type=float, default=40, help="open-loop probe GETs a second during failover")
    add("--lead", type=float, default=4, help="seconds of load before the instance is killed or stopped")
    add("--dead-seconds", type=float, default=10, help="seconds between the kill and the restart")
    add("--kill-tail", type=float, default=14, help="seconds of load after the restart")
    add("--hang-seconds", type=float, default=8, help="seconds the instance stays stopped; 0 skips")
    add("--hang-tail", type=float, default=6, help="seconds of load after SIGCONT")
    add(
        "--only",
        default="overhead,mixed,kill,hang",
        help="scenarios to run, comma-separated: overhead, mixed, kill, hang, and checkouts (the buyers "
        "alone, not in the default set)",
    )
    add("--frontends", default=",".join(f.tag for f in FRONTENDS), help="front ends, by tag")
    add("--json", default=str(ROOT / "docs" / "load_balancing.json"), help="where to write the figures")
    add("--keep", action="store_true", help="leave the stack running (it is reused next time)")
    add("--down", action="store_true", help="only stop the stack of run/lb-stack, and exit")
    add("--write-haproxy-example", action="store_true", help="write docs/haproxy.cfg.example, and exit")
    return parser.parse_args()


EXAMPLE_HEADER = """\
# HAProxy in front of the app instances: the equivalent of the upstream part of nginx.conf, as
# measured in docs/load_balancing.md (written by benchmarks/load_balancers.py
# --write-haproxy-example; the benchmark runs the same template on its own ports).
#
# Check it with:   haproxy -c -f docs/haproxy.cfg.example
# Run it with:     haproxy -db -f docs/haproxy.cfg.example     (foreground; logs to stdout)
#
# What it does not replace: nginx also serves the storefront and /media itself, caches Swagger
# UI's assets, answers its own errors as problem+json, limits /api/auth/ per client address and
# checks the request id and body size before the app sees them (docs/load_balancing.md).
"""


def main() -> None:
    args = parse_args()
    if args.write_haproxy_example:
        path = ROOT / "docs" / "haproxy.cfg.example"
        path.write_text(
            haproxy_config(
                port=8080,
                balance="leastconn",
                servers={"app1": 8001, "app2": 8002},
                log=False,
                stats_port=8404,
                header=EXAMPLE_HEADER,
            )
        )
        print(f"wrote {path}")
        return
    if args.down:
        stack("down", check=False)
        return
    scenarios = set(args.only.split(","))
    wrk = ensure_wrk()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(haproxy).exists():
        # Debian's package; its own service is not used (the package's postinst may start it on
        # 127.0.0.1 defaults; this script runs its own processes with their own configs).
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], check=False, capture_output=True)
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise SystemExit("haproxy is missing and could not be installed: apt-get install -y haproxy")
    frontends = [f for f in FRONTENDS if f.tag in args.frontends.split(",")]
    for frontend in frontends:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", frontend.port))
            except OSError:
                raise SystemExit(f"port {frontend.port} ({frontend.name}) is taken") from None

    load_before = os.getloadavg()
    started_at = time.time()
    started_stack = ensure_stack()
    running: dict[str, Running] = {}
    database = connect_db()
    report: dict = {
        "command": " ".join([".venv/bin/python benchmarks/load_balancers.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cores": os.cpu_count(),
            "shared_by": "client, balancer, 2 app instances, PostgreSQL, Redis",
        },
        "versions": versions(wrk, nginx, haproxy),
        "rounds": args.rounds,
        "failover_rounds": args.failover_rounds,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep", "down")},
        "haproxy_server_options": HAPROXY_SERVER_OPTIONS,
    }
    script = LB_DIR / "random_product.lua"
    try:
        buyers = prepare(args, database)
        LB_DIR.mkdir(parents=True, exist_ok=True)
        script.write_text(LUA_RANDOM_PRODUCT % args.hot_set)
        for frontend in frontends:
            running[frontend.name] = Running(frontend, nginx, haproxy)
            running[frontend.name].start()
        # Warm-up: every front end's connections, each instance's per-process cache.
        for frontend in frontends:
            Wrk(wrk, frontend.port, script, 16, 2).result()
        print(f"ready after {time.time() - started_at:.0f}s", file=sys.stderr)

        if "overhead" in scenarios:
            targets = [("direct to app1", INSTANCES["app1"])] + [(f.name, f.port) for f in frontends]
            samples: dict[str, list[dict]] = {name: [] for name, _ in targets}
            for round_number in range(args.rounds):
                shift = round_number % len(targets)
                for name, port in targets[shift:] + targets[:shift]:
                    samples[name].append(run_overhead(args, wrk, script, running, port, name))
                print(f"overhead: round {round_number + 1}/{args.rounds} done", file=sys.stderr)
            overhead = {name: median_dict(rows) for name, rows in samples.items()}
            direct = overhead["direct to app1"]["rps"]
            for row in overhead.values():
                row["ratio"] = round(row["rps"] / direct, 3)
            report["overhead"] = overhead

        if "mixed" in scenarios:
            samples = {f.name: [] for f in frontends}
            for round_number in range(args.rounds):
                shift = round_number % len(frontends)
                for frontend in frontends[shift:] + frontends[:shift]:
                    row = run_mixed(args, wrk, script, running[frontend.name], buyers, database)
                    samples[frontend.name].append(row)
                    print(
                        f"mixed {round_number + 1}/{args.rounds} {frontend.name:20} "
                        f"{row['read_rps']:6.0f} reads/s p99 {row['read_p99_ms']:6.1f} ms, "
                        f"{row['checkout_ops']:5.1f} orders/s p99 {row['checkout_p99_ms']:6.1f} ms, "
                        f"share {row['instance_share']}",
                        file=sys.stderr,
                    )
            report["results"] = {name: median_dict(rows) for name, rows in samples.items()}
            report["rounds_raw"] = samples

        if "checkouts" in scenarios:
            samples = {f.name: [] for f in frontends}
            for round_number in range(args.rounds):
                shift = round_number % len(frontends)
                for frontend in frontends[shift:] + frontends[:shift]:
                    row = run_checkouts_only(args, running[frontend.name], buyers, database)
                    samples[frontend.name].append(row)
                    print(
                        f"checkouts {round_number + 1}/{args.rounds} {frontend.name:20} {row}",
                        file=sys.stderr,
                    )
            report["checkouts_only"] = {name: median_dict(rows) for name, rows in samples.items()}

        modes = [mode for mode in ("kill", "hang") if mode in scenarios]
        if args.hang_seconds <= 0 and "hang" in modes:
            modes.remove("hang")
        if modes:
            failover_samples: dict[str, dict[str, list[dict]]] = {
                f.name: {m: [] for m in modes} for f in frontends
            }
            for round_number in range(args.failover_rounds):
                shift = round_number % len(frontends)
                for frontend in frontends[shift:] + frontends[:shift]:
                    for mode in modes:
                        victim = f"http://127.0.0.1:{INSTANCES[VICTIM]}/readyz"
                        if wait_until(lambda url=victim: get(url, 1) == 200, 60) is None:
                            raise SystemExit(f"{VICTIM} is not ready")
                        time.sleep(2)
                        running[frontend.name].restart()  # no failure counts left from earlier runs
                        row = run_failover(args, wrk, script, running[frontend.name], buyers, database, mode)
                        failover_samples[frontend.name][mode].append(row)
                        print(
                            f"{mode} {round_number + 1}/{args.failover_rounds} {frontend.name}: {row}",
                            file=sys.stderr,
                        )
            report["failover"] = {
                name: {mode: median_dict(rows) for mode, rows in by_mode.items() if rows}
                for name, by_mode in failover_samples.items()
            }
            report["failover_raw"] = failover_samples
    finally:
        for pid in STOPPED:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for each in running.values():
            each.stop()
        database.close()
        if started_stack and not args.keep:
            stack("down", check=False)
    report["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
    }
    report["duration_s"] = round(time.time() - started_at)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(
        f"\nload average before {report['load_average']['before']}, after {report['load_average']['after']}; "
        f"{report['duration_s']} s in all; figures in {args.json}"
    )


if __name__ == "__main__":
    main()
