"""Plain helpers the tests share: assertions on answers, auth headers, SQL statement capture,
threads released together, the CLI, and scratch PostgreSQL databases. Fixtures live in
``conftest.py``."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg2
from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

import ecommerce.models  # noqa: F401  (every model's table in the metadata)
from ecommerce.extensions import db
from tests.factories import PASSWORD, UserFactory

# Every table of the models, dependents first. alembic_version is no model's: emptying the
# tables leaves the schema's migration mark alone.
TABLES = [table.name for table in reversed(db.metadata.sorted_tables)]


def truncate_every_table() -> None:
    """Empty every table of the current app's database and restart its ids (the schema stays)."""
    db.session.remove()
    db.session.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    db.session.commit()
    db.session.remove()


# -- answers ------------------------------------------------------------------------------


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with this status, with no trace of the server's code
    in it; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(problem), problem
    assert problem["status"] == status and problem["title"] and problem["detail"], problem
    assert "Traceback" not in response.get_data(as_text=True)
    return problem


_LINK = re.compile(r'<([^>]*)>; rel="([^"]+)"')
_LINK_RELS = (
    ("first", "first_page"),
    ("prev", "previous_page"),
    ("next", "next_page"),
    ("last", "last_page"),
)


def assert_pagination(response, *, total: int, page: int = 1, page_size: int | None = None) -> dict[str, int]:
    """The parsed ``X-Pagination`` header of a page of a list, checked; returns it.

    The total always; every other field as flask-smorest's rule makes it (written out here, not
    taken from the app), with the page count computed from ``page_size`` when it is given, else
    taken from the header. The ``Link`` header must carry exactly the relations the metadata
    names, each pointing at that page. Works on a test client's and on a ``requests`` response.
    """
    meta = json.loads(response.headers["X-Pagination"])
    assert meta.get("total") == total, meta
    pages = meta.get("total_pages") if page_size is None else -(-total // page_size)
    expected = {"total": total, "total_pages": pages}
    if total:
        expected |= {"first_page": 1, "last_page": pages}
        if page <= pages:
            expected["page"] = page
            if page > 1:
                expected["previous_page"] = page - 1
            if page < pages:
                expected["next_page"] = page + 1
    assert meta == expected, meta
    links = {
        rel: parse_qs(urlsplit(url).query).get("page")
        for url, rel in _LINK.findall(response.headers.get("Link", ""))
    }
    assert links == {rel: [str(meta[key])] for rel, key in _LINK_RELS if key in meta}, links
    return meta


# -- auth headers ---------------------------------------------------------------------------


def login(client, username: str, password: str = PASSWORD) -> dict:
    """The body of a successful login: access and refresh tokens."""
    response = client.post("/api/auth/login/", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_customer(client):
    """A fresh customer and the headers of their login."""
    customer = UserFactory()
    return customer, bearer(login(client, customer.username)["access_token"])


# -- what runs underneath ---------------------------------------------------------------------


@contextmanager
def capture_statements(app: Flask, wanted: Callable[[str, Any], bool] | None = None) -> Iterator[list[str]]:
    """Every SQL statement the engine of ``app`` sends while the block runs (or those for which
    ``wanted(statement, parameters)`` holds), in order: observation only, through SQLAlchemy's
    ``before_cursor_execute``. Statements of requests on other threads are caught too.

    BEGIN and COMMIT are not among them: the driver sends those without the hook seeing them."""

    def note(conn, statement: str, parameters: Any) -> str | None:
        return statement if wanted is None or wanted(statement, parameters) else None

    with observe_statements(app, "before_cursor_execute", note) as sent:
        yield sent


@contextmanager
def observe_statements(app: Flask, hook: str, note: Callable[[Any, str, Any], Any]) -> Iterator[list[Any]]:
    """What ``note(connection, statement, parameters)`` makes of each statement the engine of
    ``app`` runs while the block runs (None: nothing), through SQLAlchemy's ``hook``
    (``before_cursor_execute`` or ``after_cursor_execute``), from any thread, in order."""
    seen: list[Any] = []
    lock = threading.Lock()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        noted = note(conn, statement, parameters)
        if noted is not None:
            with lock:
                seen.append(noted)

    with app.app_context():
        engine = db.engine
    event.listen(engine, hook, record)
    try:
        yield seen
    finally:
        event.remove(engine, hook, record)


def run_concurrently(calls: list, timeout: float = 60) -> list:
    """Run every call in its own thread, released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls), timeout=timeout)

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls, timeout=timeout))


def invoke_cli(app: Flask, *args: str):
    """A ``flask`` command of ``app`` through Click's test runner. `flask` pushes an app context
    for every app.cli command; the runner invokes the group directly, so it is pushed here."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


# -- scratch databases ------------------------------------------------------------------------


def _server_admin(url: str):
    """An autocommit connection to the maintenance database of the server ``url`` is on."""
    parsed = make_url(url)
    admin = psycopg2.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
    )
    admin.autocommit = True
    return admin


def drop_database(url: str) -> None:
    """Drop the database ``url`` names (ending its sessions first), if it exists."""
    name = make_url(url).database
    admin = _server_admin(url)
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def recreate_database(url: str) -> None:
    """An empty database ``url`` names, dropped first if it exists."""
    drop_database(url)
    admin = _server_admin(url)
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{make_url(url).database}"')
    admin.close()


# -- Server-Sent Events -----------------------------------------------------------------------


class EventReader:
    """Reads a ``text/event-stream`` body on a thread of its own: ``next(timeout)`` gives the
    next event as ``{"id", "event", "data"}`` (``data`` parsed JSON), or a ``{"comment": ...}``;
    ``None`` when nothing came in time; ``{"closed": True}`` when the stream ended. ``last_at``:
    when the item ``next`` gave last arrived (time.monotonic(), taken by the reading thread).
    ``close()`` ends the stream from the reading thread (give the app a short heartbeat, so the
    thread wakes to see it)."""

    def __init__(self, chunks) -> None:
        self._chunks = chunks
        self._items: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.last_at: float | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self._chunks:
                buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self._items.put((time.monotonic(), _parse_block(block)))
                if self._stop.is_set():
                    break
        finally:
            closer = getattr(self._chunks, "close", None)
            if closer is not None:
                closer()
            self._items.put((time.monotonic(), {"closed": True}))

    def next(self, timeout: float = 5.0, *, comments: bool = False) -> dict | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                arrived, item = self._items.get(timeout=left)
            except queue.Empty:
                return None
            self.last_at = arrived
            if "comment" in item and not comments:
                continue
            if "retry" in item and len(item) == 1:
                continue
            return item
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _parse_block(block: str) -> dict:
    item: dict = {}
    data: list[str] = []
    for line in block.split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "":
            item["comment"] = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            item["id"] = int(value)
        elif field in ("event", "retry"):
            item[field] = value
    if data:
        item["data"] = json.loads("\n".join(data))
    return item


def clear_of_a_minute_edge(margin: float = 5.0) -> None:
    """The default rate limit's windows are the clock's minutes (ecommerce/core/ratelimit.py): a
    test counting requests against a per-minute limit starts with more than ``margin`` seconds
    of its minute left, so that no count is reset halfway."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)
