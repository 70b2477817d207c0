"""Probes and metrics: liveness, readiness with each dependency down, Prometheus text."""

from __future__ import annotations

from flask import request
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import ProductFactory
from tests.helpers import assert_pagination

DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
DEAD_DATABASE_URI = "postgresql+psycopg2://postgres@127.0.0.1:1/x"


def _assert_unavailable(response, down: str, up: str) -> dict:
    assert response.status_code == 503, response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    problem = response.get_json()
    assert problem["status"] == 503 and down in problem["detail"] and up not in problem["detail"]
    assert problem["checks"][down] == "down" and problem["checks"][up] == "ok"
    return problem


def test_liveness(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["X-Request-ID"]


def test_readiness_with_everything_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_redis_down_fails_readiness_but_reads_fall_back_to_the_database(app, make_instance):
    with app.app_context():
        product = ProductFactory(name="Fallback Lamp")
        product_id, category_id = product.id, product.category_id
    expected = app.test_client().get(f"/api/products/{product_id}/").get_json()

    no_redis = make_instance(REDIS_URL=DEAD_REDIS_URL)
    client = no_redis.test_client()

    _assert_unavailable(client.get("/readyz"), down="redis", up="database")
    assert client.get("/healthz").status_code == 200

    detail = client.get(f"/api/products/{product_id}/")
    assert detail.status_code == 200
    assert detail.get_json() == expected
    assert detail.headers["ETag"]
    listed = client.get(f"/api/products/?category={category_id}")
    assert listed.status_code == 200
    assert [p["id"] for p in listed.get_json()] == [product_id]
    assert_pagination(listed, total=1)
    # Twice more: the open breaker path answers from the database too.
    assert client.get(f"/api/products/{product_id}/").get_json() == expected
    assert client.get("/api/products/").status_code == 200


def test_database_down_fails_readiness(make_instance):
    no_database = make_instance(SQLALCHEMY_DATABASE_URI=DEAD_DATABASE_URI)
    client = no_database.test_client()

    _assert_unavailable(client.get("/readyz"), down="database", up="redis")
    assert client.get("/healthz").status_code == 200
    # A read that needs the database is a retryable 503 problem, never a 500 or an HTML page.
    read = client.get("/api/products/1/")
    assert read.status_code == 503
    assert read.headers["Content-Type"] == "application/problem+json"
    assert read.headers["Retry-After"]


def test_metrics_are_prometheus_text(client):
    assert client.get("/api/products/").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "version=0.0.4" in response.headers["Content-Type"]
    text = response.get_data(as_text=True)
    assert "# HELP ecommerce_http_request_duration_seconds" in text
    assert "# TYPE ecommerce_http_request_duration_seconds histogram" in text
    assert any(
        line.startswith("ecommerce_http_request_duration_seconds_count{")
        and 'endpoint="products.ProductsView"' in line
        for line in text.splitlines()
    )
    assert "ecommerce_cache_requests_total" in text
    assert 'endpoint="health.LivenessView"' not in text  # probes are not measured


def _samples(client) -> dict[tuple, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _grew(before, after, name, **labels) -> float:
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_each_request_is_counted_once_by_method_endpoint_and_status(client):
    product = ProductFactory()
    client.get("/api/products/")  # the first read of a list fills the cache: not what is counted
    before = _samples(client)
    for _ in range(3):
        assert client.get("/api/products/").status_code == 200
    assert client.get(f"/api/products/{product.id}/").status_code == 200
    assert client.get("/api/products/2147483000/").status_code == 404
    assert client.get("/no/such/page").status_code == 404
    assert client.post("/api/products/", json={}).status_code == 401
    assert client.get("/healthz").status_code == 200
    after = _samples(client)

    duration = "ecommerce_http_request_duration_seconds_count"
    assert _grew(before, after, duration, method="GET", endpoint="products.ProductsView", status=200) == 3
    assert _grew(before, after, duration, method="GET", endpoint="products.ProductByIdView", status=200) == 1
    assert _grew(before, after, duration, method="GET", endpoint="products.ProductByIdView", status=404) == 1
    assert _grew(before, after, duration, method="GET", endpoint="None", status=404) == 1
    assert _grew(before, after, duration, method="POST", endpoint="products.ProductsView", status=401) == 1
    # The histogram's buckets add up to its count, and the totals agree with it; the probe and
    # the scrapes themselves are not counted.
    bucket = "ecommerce_http_request_duration_seconds_bucket"
    assert (
        _grew(before, after, bucket, method="GET", endpoint="products.ProductsView", status=200, le="+Inf")
        == 3
    )
    assert _grew(before, after, "ecommerce_http_request_total", method="GET", status=200) == 4
    assert _grew(before, after, "ecommerce_http_request_total", method="GET", status=404) == 2
    assert _grew(before, after, "ecommerce_http_request_total", method="POST", status=401) == 1
    assert not any(
        dict(labels).get("endpoint") in ("health.LivenessView", "prometheus_metrics") for _, labels in after
    )
    assert any(name == "ecommerce_exporter_info" for name, _ in after)


def test_a_request_is_counted_once_when_a_later_after_request_hook_fails(build_app):
    # Flask runs the after-request hooks again for the 500 that a failing hook turns the answer
    # into; the request was counted with its first answer, and only then.
    instance = build_app(PROPAGATE_EXCEPTIONS=False)  # answer the failure as a server would
    failures = []

    def fails_once(response):
        if request.path == "/api/categories/" and not failures:
            failures.append(response.status_code)
            raise RuntimeError("an after-request hook failed")
        return response

    instance.after_request_funcs.setdefault(None, []).insert(0, fails_once)  # runs after the count
    client = instance.test_client()
    before = _samples(client)
    assert client.get("/api/categories/").status_code == 500
    after = _samples(client)
    assert failures == [200]
    duration = "ecommerce_http_request_duration_seconds_count"
    assert _grew(before, after, duration, method="GET", endpoint="categories.CategoriesView", status=200) == 1
    assert _grew(before, after, duration, method="GET", endpoint="categories.CategoriesView", status=500) == 0
    assert _grew(before, after, "ecommerce_http_request_total", method="GET", status=500) == 0
