"""Losing the database connection in the middle of a request (ecommerce/core/failover.py), on the
test PostgreSQL: the request's own backend is terminated with pg_terminate_backend, as a
failover or a crashed server would end it."""

from __future__ import annotations

from contextlib import closing

import psycopg2
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url

from ecommerce.extensions import db
from tests.factories import CategoryFactory, ProductFactory


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
