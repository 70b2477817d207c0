"""gunicorn settings: gevent workers, sized from the cores, recycled with jitter.

Every value can be overridden from the environment (the names in capitals below).
"""

import json
import multiprocessing
import os
import resource
import uuid

from gevent.server import StreamServer
from gunicorn.workers import ggevent

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"

# New connections a gevent worker accepts per turn of its event loop. gunicorn lowers it from
# gevent's 100 to 1 whenever it runs several workers, to spread connections over them; but a
# turn of a busy worker serves every ready connection first, so a burst of new connections (nginx
# opening more upstream connections, clients arriving at once) waited one turn each: 64 new
# connections to a loaded instance saw their first answer after a median of 366 ms against 27 ms
# with 16 per turn, and a 5 s wrk run at 64 connections had a p99 of 423 ms against 24 ms, at
# the same throughput and with connections still spread evenly over two workers
# (benchmarks/accept_burst.py; docs/performance_tuning.md, "Tail latency").
gevent_max_accept = int(os.environ.get("GEVENT_MAX_ACCEPT", 16))


class _BatchAcceptServer(StreamServer):
    """gevent's server, with the accept batch fixed to GEVENT_MAX_ACCEPT (gunicorn's 1 ignored)."""

    max_accept = property(lambda self: gevent_max_accept, lambda self, _value: None)


class _ErrorAnswer:
    """Stands in for the client's socket while gunicorn writes its own error answer, so that
    gunicorn keeps choosing the status (414, 431, 400, ...) and logging the refusal, and the
    worker sends that status to the client as a problem instead of gunicorn's HTML page."""

    def __init__(self):
        self.written = b""

    def gettimeout(self):
        return 0.0

    def sendall(self, data):
        self.written += data


# What a client is told, by status, when gunicorn refuses a request before the app sees it.
_REFUSALS = {
    400: "The request is malformed.",
    414: "The request line (method, path and query string) is longer than the server takes.",
    431: "A request header (a cookie, say) is larger than the server takes, or there are too many.",
}


def _problem_answer(written: bytes) -> bytes:
    """gunicorn's answer (``HTTP/1.1 414 URI Too Long`` and an HTML page) as RFC 9457 JSON."""
    try:
        _, code, reason = written.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        status = int(code)
    except ValueError:
        status, reason = 500, "Internal Server Error"
    body = json.dumps(
        {
            "type": "about:blank",
            "title": reason,
            "status": status,
            "detail": _REFUSALS.get(status, reason + "."),
            "request_id": uuid.uuid4().hex,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker, with servers that accept GEVENT_MAX_ACCEPT connections per turn,
    and its own error answers (a request line or header it refuses) in application/problem+json
    like every answer of the app (without nginx in front, as `make run` serves, they reach the
    client as they are)."""

    def run(self):
        ggevent.StreamServer = _BatchAcceptServer  # this worker process's servers only
        super().run()

    def handle_error(self, req, client, addr, exc):
        answer = _ErrorAnswer()
        super().handle_error(req, answer, addr, exc)
        try:
            client.sendall(_problem_answer(answer.written))
        except OSError:
            self.log.debug("Failed to send the error answer.")


worker_class = GeventWorker

# With Redis, workers share the cache and the limits: one worker per core (gevent gives each
# many concurrent requests). On the embedded defaults the cache and the rate-limit store
# live in process memory, so one worker keeps them coherent.
_default_workers = multiprocessing.cpu_count() if os.environ.get("REDIS_URL") else 1
workers = int(os.environ.get("WEB_CONCURRENCY", _default_workers))
# Connections a worker holds at once: live event streams (at most EVENTS_MAX_STREAMS, 3000 by
# default, each an idle greenlet and a socket) and 1000 more for ordinary requests, which the
# streams can then never crowd out.
worker_connections = int(
    os.environ.get("WORKER_CONNECTIONS", int(os.environ.get("EVENTS_MAX_STREAMS", 3000)) + 1000)
)


def _raise_open_file_limit(wanted: int) -> None:
    """Each connection is a file descriptor (and each of its database and Redis sockets one
    more): lift the soft limit, often 1024, towards the hard one. Never lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


_raise_open_file_limit(worker_connections + 1000)

# Recycle workers now and then (leaks happen); jitter stops them all restarting at once.
# High enough that a busy worker (thousands of requests a second) restarts every few
# minutes, not every few seconds: each restart stalls its open connections briefly.
max_requests = int(os.environ.get("MAX_REQUESTS", 200000))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", 20000))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", 20))
keepalive = int(os.environ.get("KEEPALIVE", 5))

# Several instances run side by side: no shared control socket.
control_socket_disable = True

accesslog = None  # the app writes its own structured access log
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = os.environ.get("INSTANCE_NAME", "ecommerce")


def post_fork(server, worker):
    # Database waits must yield to other greenlets: psycopg2 is C code that gevent's monkey
    # patching cannot reach, so psycogreen installs a wait callback in each worker before it
    # opens any connection.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def child_exit(server, worker):
    # Multiprocess Prometheus metrics: drop a dead worker's live gauges.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_request(worker, req, environ, resp):
    # gevent switches greenlets only when one would block. A keep-alive connection whose next
    # request has already arrived would be served again and again while others wait, so each
    # request ends by yielding to the other ready greenlets. Measured on one worker with 16
    # connections (docs/performance_tuning.md): p99 205 ms -> 18 ms, throughput -7%.
    import gevent

    gevent.sleep(0)
