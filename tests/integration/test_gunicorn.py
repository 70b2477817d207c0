"""The app under the real gunicorn with gevent workers, on the test PostgreSQL and Redis."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from tests.factories import CategoryFactory, ProductFactory
from tests.helpers import assert_pagination
from tests.integration.servers import clean_env, gunicorn, wait_until

WORKERS = 2


@pytest.fixture(scope="module")
def server(app, tmp_path_factory):
    env = clean_env(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        WEB_CONCURRENCY=str(WORKERS),
        LOG_LEVEL="info",
    )
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log") as running:
        # Workers boot after the arbiter answers; wait until every one of them has said so.
        wait_until(
            lambda: len(re.findall(r"Booting worker with pid", running.log())) >= WORKERS,
            20,
            message="the workers to boot",
        )
        yield running


@pytest.fixture
def catalog(app, committed):
    with app.app_context():
        category_id = CategoryFactory().id
        return [ProductFactory(category_id=category_id).id for _ in range(25)]


def test_gevent_workers_serve_the_api(server, catalog):
    log = server.log()
    # gunicorn.conf.py's subclass of gunicorn's gevent worker (a larger accept batch).
    assert "Using worker: GeventWorker" in log, log
    assert len(re.findall(r"Booting worker with pid", log)) == WORKERS, log

    ready = server.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}

    listing = server.get("/api/products/", params={"page_size": 10})
    assert listing.status_code == 200
    assert_pagination(listing, total=len(catalog), page_size=10)
    assert len(listing.json()) == 10

    detail = server.get(f"/api/products/{catalog[0]}/")
    assert detail.status_code == 200
    not_modified = server.get(
        f"/api/products/{catalog[0]}/", headers={"If-None-Match": detail.headers["ETag"]}
    )
    assert not_modified.status_code == 304

    paths = [
        f"/api/products/?page={n % 3 + 1}&page_size=10" if n % 2 else f"/api/products/{catalog[n % 25]}/"
        for n in range(50)
    ]
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda path: server.get(path, timeout=20), paths))
    assert [r.status_code for r in responses] == [200] * 50
    assert "Traceback" not in server.log()


def _assert_refusal_problem(response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    assert re.fullmatch(r"[0-9a-f]{32}", problem["request_id"]), problem
    assert "<html>" not in response.text


def test_requests_gunicorn_refuses_get_problems_too(server, catalog):
    """A request line or header past gunicorn's limits never reaches the app: gunicorn answers it
    itself, and the worker of gunicorn.conf.py makes that answer a problem like the app's."""
    _assert_refusal_problem(server.get("/api/products/", params={"q": "a" * 5000}), 414)
    _assert_refusal_problem(server.get("/healthz", headers={"Cookie": "session=" + "b" * 8192}), 431)
    too_many = {f"X-Header-{n}": "1" for n in range(120)}  # gunicorn takes 100 fields
    _assert_refusal_problem(server.get("/healthz", headers=too_many), 431)

    # A header line without a colon, which no HTTP client library sends.
    address = urlsplit(server.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: shop\r\nNot a header\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"Content-Type: application/problem+json" in head
    assert b'"status": 400' in body

    # Below gunicorn's limit the app judges: a search term longer than 200 characters is a 422.
    long_search = server.get("/api/products/", params={"q": "a" * 300})
    assert long_search.status_code == 422
    assert long_search.headers["Content-Type"] == "application/problem+json"
    assert "q" in long_search.json()["errors"]
    # The workers are still serving.
    assert server.get(f"/api/products/{catalog[0]}/").status_code == 200


def test_database_waits_are_cooperative(app, server, catalog):
    """psycogreen's wait callback makes a worker yield while psycopg2 waits on PostgreSQL.

    With the products table locked, 20 reads of 20 (cold) products must all be waiting in
    PostgreSQL at the same time, and /healthz must still answer. Without the callback each
    gevent worker would block whole on its first query: at most one waiting query per worker.
    """
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    connect = dict(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, dbname=url.database
    )
    locker = psycopg2.connect(application_name="test-locker", **connect)
    watcher = psycopg2.connect(application_name="test-watcher", **connect)
    watcher.autocommit = True
    ids = catalog[:20]
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")

        def waiting_queries() -> int:
            with watcher.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND application_name = 'ecommerce' AND wait_event_type = 'Lock'",
                    (url.database,),
                )
                return cursor.fetchone()[0]

        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            pending = [pool.submit(server.get, f"/api/products/{pid}/", timeout=30) for pid in ids]
            try:
                wait_until(lambda: waiting_queries() >= len(ids), 15, message="20 queries waiting at once")
                # Only those greenlets wait: the same workers still answer other requests.
                for _ in range(2 * WORKERS):
                    assert server.get("/healthz", timeout=2).status_code == 200
            finally:
                locker.rollback()  # release the table, also when the waits were not seen
            responses = [future.result(timeout=30) for future in pending]
        assert [r.status_code for r in responses] == [200] * len(ids)
        assert [r.json()["id"] for r in responses] == ids
    finally:
        locker.close()
        watcher.close()


def test_each_turn_of_a_worker_accepts_a_batch_of_connections(monkeypatch):
    """gunicorn sets max_accept=1 on its servers when it runs several workers; the worker class of
    gunicorn.conf.py keeps GEVENT_MAX_ACCEPT instead, and installs that server in its own run()."""
    import runpy
    from pathlib import Path

    from gunicorn.workers import ggevent

    monkeypatch.setenv("GEVENT_MAX_ACCEPT", "7")
    settings = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    server = settings["_BatchAcceptServer"](("127.0.0.1", 0), handle=lambda *_: None)
    server.max_accept = 1  # what gunicorn's GeventWorker.run does with several workers
    assert server.max_accept == 7
    assert issubclass(settings["worker_class"], ggevent.GeventWorker)
    monkeypatch.setattr(ggevent.GeventWorker, "run", lambda self: None)
    monkeypatch.setattr(ggevent, "StreamServer", ggevent.StreamServer)  # restored afterwards
    settings["worker_class"].run(object.__new__(settings["worker_class"]))
    assert ggevent.StreamServer is settings["_BatchAcceptServer"]
