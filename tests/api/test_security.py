"""Security requirements, each proved here: headers on every answer, the CORS allow-list, body
limits, production secrets, the global per-address rate limit (and who may not dodge it), and
passwords and tokens kept out of every log. The audit these back is docs/security.md."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ecommerce import create_app
from ecommerce.config import DEV_SECRET, ProductionConfig, TestingConfig
from ecommerce.core.ratelimit import without_route_limit
from tests.factories import ProductFactory
from tests.helpers import assert_problem, bearer, clear_of_a_minute_edge, login

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REGISTER = "/api/auth/register/"
LOGIN = "/api/auth/login/"
REFRESH = "/api/auth/refresh/"
LOGOUT = "/api/auth/logout/"
ME = "/api/users/me/"
ORIGIN = "https://shop.example"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def assert_security_headers(response, csp: str | None = API_CSP) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name)
    assert "geolocation=()" in response.headers["Permissions-Policy"]
    if csp is not None:
        assert response.headers["Content-Security-Policy"] == csp, response.status_code
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Request-ID"], response.status_code


def _registration(password: str = "correct horse battery") -> dict:
    name = f"sec{uuid.uuid4().hex[:12]}"
    return {"username": name, "email": f"{name}@example.com", "password": password}


# -- security headers on every answer ----------------------------------------------------


def test_security_headers_on_every_kind_of_answer(client, user, user_headers):
    product = ProductFactory()
    detail = client.get(f"/api/products/{product.id}/")
    tokens = login(client, user.username)
    answers = {
        "200 list": client.get("/api/products/"),
        "200 detail": detail,
        "304": client.get(f"/api/products/{product.id}/", headers={"If-None-Match": detail.headers["ETag"]}),
        "201": client.post(REGISTER, json=_registration()),
        "204 logout": client.post(LOGOUT, headers=bearer(tokens["access_token"])),
        "204 preflight": client.options(LOGIN, headers={"Access-Control-Request-Method": "POST"}),
        "400": client.post(LOGIN, data=b"{", content_type="application/json"),
        "401": client.get(ME),
        "403": client.get("/api/users/", headers=user_headers),
        "404": client.get("/api/nope/"),
        "405": client.delete(REGISTER),
        "409": client.post(REGISTER, json={**_registration(), "username": user.username}),
        "413": client.post(LOGIN, data=b"x" * (1024 * 1024 + 1), content_type="application/json"),
        "415": client.post(LOGIN, data=b"a=b", content_type="application/x-www-form-urlencoded"),
        "422": client.post(REGISTER, json={**_registration(), "email": "not-an-email"}),
        "openapi": client.get("/api/openapi.json"),
        "healthz": client.get("/healthz"),
        "readyz": client.get("/readyz"),
        "metrics": client.get("/metrics"),
    }
    for label, response in answers.items():
        expected = int(label.split()[0]) if label[0].isdigit() else 200
        assert response.status_code == expected, (label, response.get_data(as_text=True)[:300])
        assert_security_headers(response)
    # Swagger UI is the one HTML page: its CSP lets its own scripts run, and nothing else.
    docs = client.get("/api/docs/")
    assert_security_headers(docs, csp=None)
    csp = docs.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp and "*" not in csp


def test_rate_limited_and_server_error_answers_carry_the_headers_too(build_app):
    clear_of_a_minute_edge()
    instance = build_app(RATELIMIT_DEFAULT="1/minute")

    @instance.route("/boom")
    def boom():
        raise RuntimeError("kaboom")

    client = instance.test_client()
    assert client.get("/api/categories/").status_code == 200
    limited = client.get("/api/categories/")
    assert_problem(limited, 429)
    assert_security_headers(limited)
    # The request id is assigned before the limiter answers, so a 429 can be traced as well.
    assert limited.get_json()["request_id"] == limited.headers["X-Request-ID"]
    crashed = client.get("/boom")
    problem = assert_problem(crashed, 500)
    assert "kaboom" not in crashed.get_data(as_text=True) and "Traceback" not in problem["detail"]
    assert_security_headers(crashed)


def test_token_and_profile_answers_are_not_stored_by_caches(client, user, user_headers):
    tokens = client.post(LOGIN, json={"username": user.username, "password": "password123"})
    assert tokens.status_code == 200
    assert tokens.headers["Cache-Control"] == "no-store"  # RFC 6749 5.1
    assert client.get(ME, headers=user_headers).headers["Cache-Control"] == "no-store"
    assert client.get("/api/cart/", headers=user_headers).headers["Cache-Control"] == "no-store"
    # The public catalog stays cacheable (revalidated with its ETag).
    product = ProductFactory()
    assert client.get(f"/api/products/{product.id}/").headers["Cache-Control"] == "no-cache"


# -- CORS --------------------------------------------------------------------------------


@pytest.fixture
def cors_client(build_app):
    return build_app(CORS_ORIGINS=[ORIGIN]).test_client()


def test_cors_preflight_from_an_allowed_origin(cors_client):
    response = cors_client.options(
        "/api/cart/items/",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert {"POST", "PATCH", "DELETE"} <= {
        m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")
    }
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert all(name in allowed_headers for name in ("authorization", "content-type", "idempotency-key"))
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    # Bearer tokens, not cookies: credentials are never allowed, and the origin is never "*".
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert_security_headers(response)


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://shop.example.evil.example", "http://shop.example", "null"]
)
def test_cors_other_origins_get_no_allow_origin(cors_client, origin):
    preflight = cors_client.options(
        LOGIN, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    simple = cors_client.get("/api/products/", headers={"Origin": origin})
    for response in (preflight, simple):
        assert response.status_code in (200, 204)
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers
        assert "Access-Control-Allow-Headers" not in response.headers


def test_cors_allowed_origin_can_read_errors(cors_client):
    response = cors_client.get(ME, headers={"Origin": ORIGIN})
    assert_problem(response, 401)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


# -- request body limits -----------------------------------------------------------------


def test_body_limit_comes_from_config_and_covers_chunked_bodies(build_app):
    client = build_app(MAX_CONTENT_LENGTH=2048).test_client()
    small = json.dumps({"username": "nobody", "password": "x" * 100}).encode()
    big = json.dumps({"username": "nobody", "password": "x" * 4096}).encode()

    # Declared length over the limit: refused before a byte of the body is read.
    too_big = client.post(LOGIN, data=big, content_type="application/json")
    assert "2048" in assert_problem(too_big, 413)["detail"]
    assert_security_headers(too_big)
    # The same size, streamed without a Content-Length (Transfer-Encoding: chunked).
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    streamed = client.post(
        LOGIN,
        input_stream=io.BytesIO(big),
        headers=chunked,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(streamed, 413)
    # Under the limit, both ways, the body is read and judged (unknown user: 401).
    assert client.post(LOGIN, data=small, content_type="application/json").status_code == 401
    under = client.post(
        LOGIN,
        input_stream=io.BytesIO(small),
        headers=chunked,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert under.status_code == 401


# -- production refuses weak secrets -----------------------------------------------------


def _production(**secrets_: str | None) -> type[ProductionConfig]:
    return type("ProductionUnderTest", (ProductionConfig,), secrets_)


STRONG = secrets.token_urlsafe(48)


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"SECRET_KEY": DEV_SECRET, "JWT_SECRET_KEY": DEV_SECRET}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-" + "x" * 25, "JWT_SECRET_KEY": STRONG}, "SECRET_KEY"),
        ({"SECRET_KEY": STRONG, "JWT_SECRET_KEY": "too-short"}, "JWT_SECRET_KEY"),
        ({"SECRET_KEY": STRONG, "JWT_SECRET_KEY": DEV_SECRET}, "JWT_SECRET_KEY"),
        ({"SECRET_KEY": None, "JWT_SECRET_KEY": STRONG}, "SECRET_KEY"),
    ],
)
def test_production_config_refuses_default_or_short_secrets(settings, named):
    with pytest.raises(
        RuntimeError, match=f"^{named} must be set to a random value of at least 32 characters"
    ):
        create_app(_production(**settings))


def test_production_config_checks_the_secrets_it_will_actually_use():
    # An override is what the app runs with, so it is what gets checked.
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(_production(SECRET_KEY=STRONG, JWT_SECRET_KEY=STRONG), SECRET_KEY=DEV_SECRET)


def _run_app_process(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``create_app()`` in a fresh interpreter, configured by the environment only, as wsgi.py is."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("APP_", "SECRET", "JWT_", "RATELIMIT_", "CORS_", "TRUSTED_", "MAX_CONTENT"))
    }
    base.update(
        DATABASE_URL=TestingConfig.SQLALCHEMY_DATABASE_URI,
        REDIS_URL=TestingConfig.REDIS_URL,
        INSTANCE_PATH=str(tmp_path),
        SANDBOX_GATEWAY_PATH=str(tmp_path / "gateway.db"),
        MAIL_FOLDER=str(tmp_path / "mail"),
        LOG_LEVEL="WARNING",
    )
    base.update(env)
    script = (
        "import json; from ecommerce import create_app; app = create_app(); c = app.config; "
        "r = app.test_client().get('/healthz'); "
        "print(json.dumps({'status': r.status_code, "
        "'limit': c['RATELIMIT_DEFAULT'], 'cors': c['CORS_ORIGINS'], 'hops': c['TRUSTED_PROXY_HOPS'], "
        "'max_body': c['MAX_CONTENT_LENGTH'], 'debug': c['DEBUG']}))"
    )
    return subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=base, capture_output=True, text=True, timeout=60
    )


def test_production_process_refuses_to_start_without_a_secret(tmp_path):
    result = _run_app_process({"APP_ENV": "production"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set to a random value of at least 32 characters in production" in result.stderr
    short = _run_app_process({"APP_ENV": "production", "SECRET_KEY": "changeme"}, tmp_path)
    assert short.returncode != 0 and "SECRET_KEY must be set" in short.stderr


def test_production_process_starts_with_a_long_random_secret(tmp_path):
    result = _run_app_process(
        {
            "APP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "RATELIMIT_DEFAULT": "300/minute",
            "CORS_ORIGINS": "https://shop.example, https://admin.shop.example",
            "TRUSTED_PROXY_HOPS": "1",
            "MAX_CONTENT_LENGTH": "65536",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started == {
        "status": 200,
        "limit": "300/minute",
        "cors": ["https://shop.example", "https://admin.shop.example"],
        "hops": 1,
        "max_body": 65536,
        "debug": False,
    }


# -- the global per-address limit --------------------------------------------------------


def _assert_rate_limited(response) -> None:
    problem = assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    assert "5 per 1 minute" in problem["detail"]


def test_global_limit_per_address(build_app):
    clear_of_a_minute_edge()
    client = build_app(RATELIMIT_DEFAULT="5/minute").test_client()
    for _ in range(5):
        assert client.get("/api/categories/").status_code == 200
    _assert_rate_limited(client.get("/api/categories/"))
    _assert_rate_limited(client.get("/api/categories"))  # the same route, without its slash
    # Flask-Limiter's default limit counts per route and address: another route has its own.
    assert client.get("/api/products/").status_code == 200


def test_probes_and_metrics_are_never_limited(build_app):
    clear_of_a_minute_edge()
    client = build_app(RATELIMIT_DEFAULT="5/minute").test_client()
    for _ in range(12):
        for path in ("/healthz", "/readyz", "/metrics"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.get_data(as_text=True)[:200])
            assert "X-RateLimit-Limit" not in response.headers


def test_only_views_with_a_limit_of_their_own_go_through_flask_limiter(app):
    # Flask-Limiter holds only the views' own limits; every other request skips its look-up
    # (core/ratelimit.py without_route_limit), and the login and registration keep theirs.
    looked_up = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:filename>", "x").replace("<int:", "<")
        path = path.replace("<product_id>", "1").replace("<image_id>", "1").replace("<order_id>", "1")
        for part in [segment for segment in path.split("/") if segment.startswith("<")]:
            path = path.replace(part, "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            with app.test_request_context(path, method=method):
                if not without_route_limit():
                    looked_up.add((rule.endpoint, method))
    assert looked_up == {("auth.RegisterView", "POST"), ("auth.LoginView", "POST")}


def test_forwarded_for_is_ignored_without_a_trusted_proxy(build_app):
    """TRUSTED_PROXY_HOPS=0: a client can't claim another address to dodge the limit."""
    clear_of_a_minute_edge()
    client = build_app(RATELIMIT_DEFAULT="5/minute", TRUSTED_PROXY_HOPS=0).test_client()
    for number in range(5):
        response = client.get("/api/categories/", headers={"X-Forwarded-For": f"203.0.113.{number}"})
        assert response.status_code == 200
    _assert_rate_limited(client.get("/api/categories/", headers={"X-Forwarded-For": "203.0.113.99"}))


def test_forwarded_for_names_the_client_behind_one_trusted_proxy(build_app):
    """TRUSTED_PROXY_HOPS=1 (nginx): the address nginx appended is the client, whatever the client
    itself put in front of it."""
    clear_of_a_minute_edge()
    client = build_app(RATELIMIT_DEFAULT="5/minute", TRUSTED_PROXY_HOPS=1).test_client()
    for _ in range(5):
        assert client.get("/api/categories/", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200
    _assert_rate_limited(client.get("/api/categories/", headers={"X-Forwarded-For": "198.51.100.7"}))
    # A forged entry in front of the one nginx appended changes nothing.
    forged = {"X-Forwarded-For": "10.0.0.1, 198.51.100.7"}
    _assert_rate_limited(client.get("/api/categories/", headers=forged))
    # Another client behind the same proxy has its own allowance.
    assert client.get("/api/categories/", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 200


def test_rate_limit_settings_are_read_from_the_environment(tmp_path):
    result = _run_app_process({"RATELIMIT_DEFAULT": "7/second", "TRUSTED_PROXY_HOPS": "1"}, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    started = json.loads(result.stdout.strip().splitlines()[-1])
    assert started["limit"] == "7/second" and started["hops"] == 1


# -- no password, token or Authorization header in any log -------------------------------


@pytest.fixture
def logged_app(build_app, committed):
    """An app logging everything (DEBUG) as JSON lines, which the test reads back."""
    instance = build_app(LOG_LEVEL="DEBUG", LOG_JSON=True)
    stream = io.StringIO()
    (handler,) = logging.getLogger().handlers
    handler.setStream(stream)
    return instance, stream


def test_passwords_and_tokens_never_reach_the_logs(logged_app, caplog):
    instance, json_log = logged_app
    caplog.set_level(logging.DEBUG)
    # As in production with LOG_LEVEL=DEBUG (migrations in this process turned it down): every SQL
    # statement is logged, so its parameters must not be.
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    client = instance.test_client()
    password = f"Pw-{uuid.uuid4().hex}"
    weak = f"W{uuid.uuid4().hex[:6]}"  # 7 characters: too short
    wrong = f"Wrong-{uuid.uuid4().hex}"
    body = _registration(password)

    assert client.post(REGISTER, json=body).status_code == 201
    assert client.post(REGISTER, json={**_registration(weak)}).status_code == 422
    assert client.post(REGISTER, json={**_registration(password), "email": "not-an-email"}).status_code == 422
    first = client.post(LOGIN, json={"username": body["username"], "password": password}).get_json()
    assert client.get(ME, headers=bearer(first["access_token"])).status_code == 200
    rotated = client.post(REFRESH, headers=bearer(first["refresh_token"]))
    assert rotated.status_code == 200
    # Replaying the old refresh token is reuse: the login is revoked (a security event).
    assert client.post(REFRESH, headers=bearer(first["refresh_token"])).status_code == 401
    second = client.post(LOGIN, json={"username": body["email"], "password": password}).get_json()
    assert client.post(LOGOUT, headers=bearer(second["access_token"])).status_code == 204
    assert client.get(ME, headers=bearer(second["access_token"])).status_code == 401
    assert client.post(LOGIN, json={"username": body["username"], "password": wrong}).status_code == 401
    assert client.post(LOGIN, json={"username": "no-such-user", "password": password}).status_code == 401
    forged = f"eyJhbGciOiJIUzI1NiJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
    assert client.get(ME, headers=bearer(forged)).status_code == 401

    tokens = [
        first["access_token"],
        first["refresh_token"],
        *rotated.get_json().values(),
        second["access_token"],
        second["refresh_token"],
        forged,
    ]
    tokens = [token for token in tokens if isinstance(token, str) and len(token) > 20]
    # The signature alone would be enough to recognise a leaked token.
    signatures = [token.rsplit(".", 1)[-1] for token in tokens]
    secrets_ = [
        password,
        weak,
        wrong,
        *tokens,
        *(signature for signature in signatures if len(signature) >= 16),
    ]

    records = list(caplog.records)
    texts = [json_log.getvalue()]
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.__dict__))
    everything = "\n".join(texts)
    for secret in secrets_:
        assert secret not in everything, f"a secret of length {len(secret)} was logged"
    assert "Authorization" not in everything and "Bearer " not in everything
    assert "$argon2" not in everything  # not even the password hash

    # The capture did see the traffic: one JSON access line per request, failures included.
    access = [json.loads(line) for line in json_log.getvalue().splitlines() if '"ecommerce.access"' in line]
    statuses = [(line["method"], line["path"], line["status"]) for line in access]
    assert ("POST", LOGIN, 401) in statuses and ("POST", REGISTER, 422) in statuses
    assert ("POST", LOGOUT, 204) in statuses and ("POST", REFRESH, 200) in statuses
    assert all(line["request_id"] for line in access)
    assert any(record.name.startswith("sqlalchemy.engine") for record in records)  # SQL was logged
    # The reuse of a refresh token is logged as a security event, naming the user, not the token.
    reuse = [r for r in records if r.name == "ecommerce.auth.services" and "reuse" in r.getMessage()]
    assert reuse and reuse[0].levelno == logging.WARNING


# -- the OpenAPI document lists every answer (the inventory Schemathesis checks against) ---


def test_openapi_documents_every_error_as_problem_json(client):
    spec = client.get("/api/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":  # the path's own parameters, not an operation
                continue
            responses = operation["responses"]
            label = f"{method.upper()} {path}"
            if "{" in path:
                assert "404" in responses, label
            if "requestBody" in operation:
                assert {"400", "413", "415", "422"} <= set(responses), label
            if operation.get("security"):
                assert "401" in responses, label
            for status, response in responses.items():
                if status == "default" or int(status) >= 400:
                    content = response.get("content") or spec["components"]["responses"][
                        response["$ref"].rsplit("/", 1)[-1]
                    ].get("content")
                    assert list(content) == ["application/problem+json"], (label, status)
    # Money is the string it is on the wire, with no number-only keywords on it.
    price = spec["components"]["schemas"]["Product"]["properties"]["price"]
    assert price["type"] == "string" and "maximum" not in price and "minimum" not in price
