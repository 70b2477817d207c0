"""Which requests Flask-Limiter looks at (core/ratelimit.py ``without_route_limit``): a view's own
limit is never skipped, whatever form the view takes, and every other request passes it by."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.views import MethodView
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from ecommerce.core.ratelimit import route_limit, without_route_limit


def _app(**config) -> Flask:
    app = Flask(__name__)
    app.config.update(RATELIMIT_HEADERS_ENABLED=True, **config)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")
    limiter.request_filter(without_route_limit)

    class Limited(MethodView):
        @route_limit(limiter, "2/minute")
        def get(self):
            return "limited"

        def post(self):
            return "not limited"

    class LimitedAsAWhole(MethodView):
        decorators = [route_limit(limiter, "2/minute")]

        def get(self):
            return "limited"

    @app.route("/function")
    @route_limit(limiter, "2/minute")
    def limited_function():
        return "limited"

    @app.route("/free")
    def free():
        return "free"

    app.add_url_rule("/limited", view_func=Limited.as_view("limited"))
    app.add_url_rule("/whole", view_func=LimitedAsAWhole.as_view("whole"))
    return app


def _looked_at(app: Flask, path: str, method: str) -> bool:
    with app.test_request_context(path, method=method):
        return not without_route_limit()


@pytest.mark.parametrize(
    ("path", "method", "looked_at"),
    [
        ("/limited", "GET", True),
        ("/limited", "HEAD", True),  # MethodView answers HEAD with the limited get
        ("/limited", "POST", False),
        ("/whole", "GET", True),  # a limit in the class's decorators is on the view itself
        ("/whole", "HEAD", True),
        ("/function", "GET", True),
        ("/free", "GET", False),
        ("/no/such/path", "GET", False),
    ],
)
def test_a_view_with_a_limit_is_looked_at_and_no_other(path, method, looked_at):
    app = _app()
    assert _looked_at(app, path, method) is looked_at


def test_limits_for_every_route_turn_the_filter_off():
    for setting in ("RATELIMIT_APPLICATION", "RATELIMIT_META"):
        app = _app(**{setting: "100/minute"})
        assert _looked_at(app, "/free", "GET")
        assert _looked_at(app, "/limited", "POST")


def test_head_requests_count_against_the_get_limit():
    app = _app()
    client = app.test_client()
    assert client.head("/limited").status_code == 200
    assert client.get("/limited").status_code == 200
    assert client.head("/limited").status_code == 429
    assert client.post("/limited").status_code == 200  # post has no limit
    for _ in range(5):
        assert client.get("/free").status_code == 200
