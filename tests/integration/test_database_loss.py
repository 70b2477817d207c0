"""Losing the database connection in the middle of a request (ecommerce/core/db/failover.py), on the
test PostgreSQL: the request's own backend is terminated with pg_terminate_backend, as a
failover or a crashed server would end it."""

from __future__ import annotations

import logging
import time
from contextlib import closing

import psycopg2
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ecommerce.extensions import db
from tests.factories import CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, login


def _terminate(app, pid: int) -> None:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    with closing(
        psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
    ) as other:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cursor.fetchone()[0]


def _session_backend_pid() -> int:
    return db.session.connection().connection.dbapi_connection.info.backend_pid


def _retries() -> float:
    return REGISTRY.get_sample_value("ecommerce_db_failover_retries_total") or 0.0


def test_a_read_that_loses_its_connection_is_run_again(make_instance):
    app = make_instance()
    with app.app_context():
        product_id = ProductFactory(category_id=CategoryFactory().id).id
    killed: list[int] = []

    @app.before_request
    def lose_the_connection_once():
        if not killed:  # the first attempt only: its connection dies before the view's query
            killed.append(_session_backend_pid())
            _terminate(app, killed[0])

    before = _retries()
    response = app.test_client().get(f"/api/products/{product_id}/")
    assert response.status_code == 200, response.get_json()
    assert killed and _retries() >= before + 1


def test_a_lost_connection_while_the_session_closes_is_not_a_500(make_instance):
    """The answer is made; the server dies before the request's session is closed (its rollback
    fails). The client gets its 200; the dead connection is dropped."""
    app = make_instance()
    with app.app_context():
        category_id = CategoryFactory().id

    @app.after_request
    def lose_the_connection_after_the_answer(response):
        _terminate(app, _session_backend_pid())
        return response

    response = app.test_client().get(f"/api/categories/{category_id}/")
    assert response.status_code == 200, response.get_data(as_text=True)


def _add_lossy_routes(app, attempts: list[str]) -> None:
    """Two POST views that lose their connection: before committing anything, and after."""
    from sqlalchemy import text

    @app.post("/test-only/lose-before-commit")
    def lose_before_commit():
        attempts.append("before")
        if len(attempts) == 1:
            _terminate(app, _session_backend_pid())
        db.session.execute(text("SELECT 1"))
        db.session.commit()
        return {"attempts": len(attempts)}

    @app.post("/test-only/lose-after-commit")
    def lose_after_commit():
        attempts.append("after")
        db.session.execute(text("SELECT 1"))
        db.session.commit()
        _terminate(app, _session_backend_pid())
        db.session.execute(text("SELECT 1"))
        return {"attempts": len(attempts)}


def test_a_write_that_committed_nothing_is_run_again(make_instance):
    app = make_instance()
    attempts: list[str] = []
    _add_lossy_routes(app, attempts)
    before = _retries()
    response = app.test_client().post("/test-only/lose-before-commit")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"attempts": 2}
    assert _retries() == before + 1


def test_a_request_that_sent_a_commit_is_not_run_again_but_answered_503(make_instance):
    """Its COMMIT reached the server: only the client may retry (with its Idempotency-Key)."""
    app = make_instance()
    attempts: list[str] = []
    _add_lossy_routes(app, attempts)
    before = _retries()
    response = app.test_client().post("/test-only/lose-after-commit")
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert attempts == ["after"] and _retries() == before


# -- with a replica configured: the commits of an Idempotency-Key after a rollback ---------------


def _shop_with_replica(make_instance):
    """An app whose DATABASE_REPLICA_URL is the test database itself: every commit that wrote
    runs the read-your-writes hook (ecommerce/core/db/replicas.py), as on a Patroni cluster."""
    url = make_instance().config["SQLALCHEMY_DATABASE_URI"]
    app = make_instance(SQLALCHEMY_REPLICA_URI=url)
    with app.app_context():
        username = UserFactory().username
        product_id = ProductFactory(category_id=CategoryFactory().id, stock_quantity=5).id
    client = app.test_client()
    headers = bearer(login(client, username)["access_token"])
    return app, client, headers, product_id


def _no_errors_logged(caplog) -> None:
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []


def test_a_checkout_that_loses_its_connection_after_its_claim_is_503_and_frees_the_key(make_instance, caplog):
    """The connection dies inside the checkout, after the Idempotency-Key claim was committed;
    the claim is released on a new connection (the server is still there). That release
    commits after a rollback, which expired the request's user: the read-your-writes hook
    must not load it (no SQL can run in after_commit), or the 503 becomes a 500."""
    app, client, headers, product_id = _shop_with_replica(make_instance)
    added = client.post("/api/cart/items/", json={"product_id": product_id, "quantity": 1}, headers=headers)
    assert added.status_code == 201, added.get_json()
    with app.app_context():
        engine = db.engine
    killed: list[int] = []

    def lose_the_connection_in_the_checkout(connection, _cursor, statement, *_args) -> None:
        if not killed and "place_orders(" in statement:  # the checkout's one statement
            killed.append(connection.connection.dbapi_connection.info.backend_pid)
            _terminate(app, killed[0])

    event.listen(engine, "before_cursor_execute", lose_the_connection_in_the_checkout)
    try:
        response = client.post("/api/orders/", json={}, headers={**headers, "Idempotency-Key": "lost-1"})
    finally:
        event.remove(engine, "before_cursor_execute", lose_the_connection_in_the_checkout)
    assert killed
    assert response.status_code == 503, response.get_json()  # its claim was committed: not re-run
    assert response.headers["Retry-After"].isdigit()
    _no_errors_logged(caplog)

    retried = client.post("/api/orders/", json={}, headers={**headers, "Idempotency-Key": "lost-1"})
    assert retried.status_code == 201, retried.get_json()  # the claim was released
    assert "Idempotent-Replayed" not in retried.headers


def test_an_idempotent_checkout_refused_with_a_409_is_stored_with_a_replica(make_instance, caplog):
    """An empty cart: the checkout rolls back, then stores its 409 under the key and commits."""
    _app, client, headers, _product_id = _shop_with_replica(make_instance)
    key_headers = {**headers, "Idempotency-Key": "empty-1"}
    response = client.post("/api/orders/", json={}, headers=key_headers)
    assert response.status_code == 409, response.get_json()
    _no_errors_logged(caplog)
    replayed = client.post("/api/orders/", json={}, headers=key_headers)
    assert replayed.status_code == 409
    assert replayed.headers["Idempotent-Replayed"] == "true"


def _pings(outcome: str) -> float:
    return REGISTRY.get_sample_value("ecommerce_db_idle_pings_total", {"outcome": outcome}) or 0.0


def _pooled_backend_pids(app) -> list[int]:
    """The backends of the connections now idle in the app's pool."""
    pids = []
    with app.app_context():
        pool = db.engine.pool
        for record in list(pool._pool.queue):  # idle connections, in the order they go out
            pids.append(record.dbapi_connection.info.backend_pid)
    return pids


def test_a_connection_that_died_while_idle_is_replaced_before_use(make_instance):
    """Idle longer than DB_PING_IDLE_SECONDS: pinged at checkout, found dead, replaced; the
    request never sees it (no retry)."""
    app = make_instance(DB_PING_IDLE_SECONDS=0.2)
    with app.app_context():
        category_id = CategoryFactory().id
    client = app.test_client()
    assert client.get(f"/api/categories/{category_id}/").status_code == 200
    pids = _pooled_backend_pids(app)
    assert pids, "no idle connection in the pool"
    for pid in pids:
        _terminate(app, pid)
    time.sleep(0.3)
    before, dead = _retries(), _pings("dead")
    response = client.get(f"/api/categories/{category_id}/")
    assert response.status_code == 200, response.get_json()
    assert _retries() == before, "the dead connection reached the request"
    assert _pings("dead") >= dead + 1, "the idle connection was not pinged"


def test_a_busy_connection_is_not_pinged_and_a_dead_one_costs_a_retry(make_instance):
    """Returned moments ago: no ping. If it died meanwhile, its first statement fails and the
    request, having committed nothing, is run again on a fresh connection."""
    app = make_instance(DB_PING_IDLE_SECONDS=60)
    with app.app_context():
        category_id = CategoryFactory().id
    client = app.test_client()
    assert client.get(f"/api/categories/{category_id}/").status_code == 200
    pings = _pings("alive") + _pings("dead")
    assert client.get(f"/api/categories/{category_id}/").status_code == 200
    assert _pings("alive") + _pings("dead") == pings, "a connection returned moments ago was pinged"
    for pid in _pooled_backend_pids(app):
        _terminate(app, pid)
    before = _retries()
    response = client.get(f"/api/categories/{category_id}/")
    assert response.status_code == 200, response.get_json()
    assert _retries() >= before + 1


def test_an_exhausted_pool_is_503_with_retry_after_not_500(make_instance):
    """Every connection of the pool busy for DB_POOL_TIMEOUT: a saturated instance, which the
    client may retry, not a failure of the server."""
    with make_instance().app_context():
        product_id = ProductFactory(category_id=CategoryFactory().id).id
    instance = make_instance(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=1)
    with instance.app_context():
        held = db.engine.connect()  # the pool's only connection, taken
        try:
            response = instance.test_client().get(f"/api/products/{product_id}/")
        finally:
            held.close()
        assert response.status_code == 503, response.get_json()
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "2"
        # The connection back in the pool, the same read answers.
        assert instance.test_client().get(f"/api/products/{product_id}/").status_code == 200
        db.session.remove()
