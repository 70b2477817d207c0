"""Cross-cutting rules: problem+json errors, body rules, slashes, request ids, headers, docs, CORS."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest

from ecommerce import create_app
from ecommerce.config import TestingConfig
from ecommerce.extensions import db, limiter
from tests.helpers import assert_problem

PROBLEM = "application/problem+json"
REGISTER = "/api/auth/register/"
LOGIN = "/api/auth/login/"
ME = "/api/users/me/"
MAX_BODY = 1024 * 1024


def _registration():
    name = f"err{uuid.uuid4().hex[:10]}"
    return {"username": name, "email": f"{name}@example.com", "password": "password123"}


# -- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{bad", b'{"username": "a",}', b"{'username': 'a'}", b"   ", b"\xff\xfe"])
def test_malformed_json_is_400(client, body):
    response = client.post(LOGIN, data=body, content_type="application/json")
    problem = assert_problem(response, 400)
    assert "json" in problem["detail"].lower()


def test_malformed_json_on_an_authenticated_endpoint_is_400(client, user_headers):
    response = client.patch(
        ME, data=b'{"first_name": ', content_type="application/json", headers=user_headers
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", b"username=alice&password=password123"),
        ("text/plain", b'{"username": "alice", "password": "password123"}'),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\nalice\r\n--xyz--\r\n"),
        ("application/xml", b"<login/>"),
    ],
)
def test_wrong_content_type_is_415(client, content_type, body):
    response = client.post(LOGIN, data=body, content_type=content_type)
    assert_problem(response, 415)


def test_form_body_on_patch_is_415(client, user_headers):
    response = client.patch(ME, data={"first_name": "Eve"}, headers=user_headers)
    assert_problem(response, 415)


def test_json_with_charset_is_accepted(client, user):
    response = client.post(
        LOGIN,
        data=json.dumps({"username": user.username, "password": "password123"}),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413(client, app):
    assert app.config["MAX_CONTENT_LENGTH"] == MAX_BODY
    body = json.dumps({**_registration(), "first_name": "x" * MAX_BODY}).encode()
    assert len(body) > MAX_BODY
    assert_problem(client.post(REGISTER, data=body, content_type="application/json"), 413)
    # Even when the content type is wrong too, the size is what is reported.
    assert_problem(client.post(REGISTER, data=body, content_type="text/plain"), 413)


def _post_chunked(client, path, body: bytes):
    """POST without a Content-Length, as a client streaming ``Transfer-Encoding: chunked`` does."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_chunked_body_over_the_limit_is_413(client):
    body = json.dumps({**_registration(), "first_name": "x" * (2 * MAX_BODY)}).encode()
    assert_problem(_post_chunked(client, REGISTER, body), 413)


def test_chunked_body_under_the_limit_is_read(client):
    body = _registration()
    response = _post_chunked(client, REGISTER, json.dumps(body).encode())
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["username"] == body["username"]


def test_body_just_under_the_limit_is_read(client):
    body = json.dumps({**_registration(), "first_name": ""})
    body = body.replace('"first_name": ""', '"first_name": "' + "x" * (MAX_BODY - len(body) - 10) + '"')
    assert len(body.encode()) <= MAX_BODY
    response = client.post(REGISTER, data=body, content_type="application/json")
    problem = assert_problem(response, 422)  # too long a name, but the body was read and validated
    assert "first_name" in problem["errors"]


@pytest.mark.parametrize("body", [[1, 2], ["username", "password"], "hello", 42, None, True])
def test_body_that_is_not_an_object_is_422(client, body):
    response = client.post(LOGIN, data=json.dumps(body), content_type="application/json")
    problem = assert_problem(response, 422)
    assert problem["errors"]


def test_unknown_field_is_422(client):
    response = client.post(REGISTER, json={**_registration(), "is_admin": True})
    problem = assert_problem(response, 422)
    assert "is_admin" in problem["errors"]


def test_unknown_field_on_patch_is_422(client, user_headers):
    response = client.patch(ME, json={"first_name": "Eve", "password_hash": "x"}, headers=user_headers)
    problem = assert_problem(response, 422)
    assert "password_hash" in problem["errors"]


@pytest.mark.parametrize("field", ["username", "first_name", "email", "password"])
def test_nul_character_in_a_json_string_is_422(client, field):
    body = {**_registration(), field: "abc\u0000def"}
    if field == "email":
        body["email"] = "abc\u0000def@example.com"
    wire = json.dumps(body)
    assert "\\u0000" in wire  # the NUL travels as a JSON escape, as clients send it
    assert_problem(client.post(REGISTER, data=wire, content_type="application/json"), 422)


def test_nul_character_on_patch_and_in_the_query_is_422(client, user_headers, admin_headers):
    assert_problem(client.patch(ME, json={"last_name": "a\u0000"}, headers=user_headers), 422)
    assert_problem(client.get("/api/users/?q=a%00b", headers=admin_headers), 422)
    assert_problem(client.get("/api/products/?q=%00"), 422)


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udbff"])
def test_unpaired_surrogate_in_a_json_string_is_422(client, user_headers, text):
    # Valid JSON syntax, but not text PostgreSQL (or any UTF-8 store) can hold.
    body = json.dumps({**_registration(), "first_name": text})
    assert_problem(client.post(REGISTER, data=body, content_type="application/json"), 422)
    patch = json.dumps({"last_name": text})
    assert_problem(client.patch(ME, data=patch, content_type="application/json", headers=user_headers), 422)


def test_surrogate_pair_is_ordinary_text(client, user_headers):
    response = client.patch(
        ME,
        data=json.dumps({"first_name": "Smile \U0001f600"}),
        headers=user_headers,
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["first_name"] == "Smile \U0001f600"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"username": ' + b"[" * 50_000 + b"]" * 50_000 + b', "password": "x"}',
        b'{"username": "someone", "password": ' + b"9" * 5000 + b"}",
        b'{"username": "someone", "password": 1e999999}',
        b'{"username": "someone", "password": NaN}',
    ],
    ids=["deep-array", "deep-field", "huge-integer", "huge-float", "nan"],
)
def test_hostile_json_is_a_client_error(client, body):
    for path in (LOGIN, REGISTER):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code in (400, 422), response.get_data(as_text=True)[:300]
        assert_problem(response, response.status_code)


# -- routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/nothing-here/", "/api/nothing-here", "/nothing", "/api/products/abc/", "/api/users/-1/"]
)
def test_unknown_path_is_404_problem(client, admin_headers, path):
    assert_problem(client.get(path, headers=admin_headers), 404)


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/api/auth/login/"),
        ("GET", "/api/auth/login/"),
        ("PUT", "/api/users/me/"),
        ("DELETE", "/api/users/me"),
        ("POST", "/api/openapi.json"),
    ],
)
def test_wrong_method_is_405_problem(client, method, path):
    response = client.open(path, method=method)
    assert_problem(response, 405)
    assert method not in response.headers["Allow"]
    assert response.headers["Allow"]


def _slash_cases(user_headers, admin_headers):
    return [
        ("GET", "/api/products/", None, {}),
        ("GET", "/api/categories/", None, {}),
        ("GET", "/api/users/me/", None, user_headers),
        ("GET", "/api/users/me/", None, {}),
        ("GET", "/api/users/", None, admin_headers),
        ("GET", "/api/users/", None, user_headers),
        ("GET", "/api/products/987654/", None, {}),
        ("POST", "/api/auth/login/", {"username": "nobody-at-all", "password": "password123"}, {}),
        ("POST", "/api/auth/register/", {}, {}),
        ("POST", "/api/auth/refresh/", None, {}),
        ("POST", "/api/auth/logout/", None, {}),
        ("POST", "/api/products/", {}, user_headers),
        ("PATCH", "/api/users/me/", {"bogus": 1}, user_headers),
        ("DELETE", "/api/users/me/", None, user_headers),
        ("PUT", "/api/products/", {}, admin_headers),
        ("GET", "/api/auth/logout/", None, {}),
    ]


def test_paths_with_and_without_final_slash_answer_alike(client, user_headers, admin_headers):
    for method, path, body, headers in _slash_cases(user_headers, admin_headers):
        answers = []
        for variant in (path, path.rstrip("/")):
            response = client.open(
                variant, method=method, json=body, headers={**headers, "X-Request-ID": "slash-check"}
            )
            assert response.status_code not in (301, 302, 307, 308), (method, variant)
            assert "Location" not in response.headers
            answers.append(
                (response.status_code, response.headers.get("Allow"), response.get_data(as_text=True))
            )
        assert answers[0] == answers[1], (method, path)
        assert answers[0][0] < 500


def test_docs_answer_with_and_without_final_slash(client):
    with_slash = client.get("/api/docs/")
    without = client.get("/api/docs")
    assert with_slash.status_code == without.status_code == 200
    assert with_slash.get_data() == without.get_data()


# -- request id and headers --------------------------------------------------------------


def test_request_id_is_echoed(client):
    response = client.get("/api/products/", headers={"X-Request-ID": "client-id-123.abc:def_ghi"})
    assert response.headers["X-Request-ID"] == "client-id-123.abc:def_ghi"
    problem = client.get("/api/nope/", headers={"X-Request-ID": "trace-me"})
    assert problem.headers["X-Request-ID"] == "trace-me"
    assert problem.get_json()["request_id"] == "trace-me"


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, "<script>alert(1)</script>", "a\u00e9b"])
def test_request_id_is_generated_when_absent_or_invalid(client, sent):
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = client.get("/api/products/", headers=headers).headers["X-Request-ID"]
    second = client.get("/api/products/", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second
    assert first != sent


def test_every_answer_carries_a_request_id(client, user_headers):
    for response in (
        client.get("/healthz"),
        client.get("/api/nope/"),
        client.post(LOGIN, data=b"{", content_type="application/json"),
        client.get(ME),
        client.get("/api/users/", headers=user_headers),
        client.get("/api/openapi.json"),
    ):
        assert response.headers.get("X-Request-ID")


@pytest.mark.parametrize("path", ["/api/products/", "/api/nope/", "/api/users/me/", "/api/docs/", "/healthz"])
def test_security_headers(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] in ("DENY", "SAMEORIGIN")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_no_cors_headers_without_configured_origins(client):
    response = client.get("/api/products/", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


# -- OpenAPI and Swagger UI --------------------------------------------------------------

CONTRACT_PATHS = {
    "/api/auth/register/": {"post"},
    "/api/auth/login/": {"post"},
    "/api/auth/refresh/": {"post"},
    "/api/auth/logout/": {"post"},
    "/api/users/": {"get"},
    "/api/users/me/": {"get", "patch"},
    "/api/users/{user_id}/": {"get"},
    "/api/categories/": {"get", "post"},
    "/api/categories/{category_id}/": {"get", "patch", "delete"},
    "/api/products/": {"get", "post"},
    "/api/products/{product_id}/": {"get", "patch", "delete"},
    "/api/products/{product_id}/reviews/": {"get", "post"},
    "/api/reviews/{review_id}/": {"patch", "delete"},
    "/healthz": {"get"},
    "/readyz": {"get"},
}


def test_openapi_document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    for path, methods in CONTRACT_PATHS.items():
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), path
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # Protected operations document their bearer auth and their 401.
    me = spec["paths"]["/api/users/me/"]["get"]
    assert me["security"] == [{"bearerAuth": []}]
    assert "401" in me["responses"]
    assert "403" in spec["paths"]["/api/users/"]["get"]["responses"]
    # Nothing in the document leaks a password hash.
    assert "password_hash" not in response.get_data(as_text=True)


def test_swagger_ui_and_its_assets_are_served_locally(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "/api/openapi.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/api/docs/assets/"), asset  # no CDN
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert served.mimetype in ("text/javascript", "application/javascript", "text/css"), asset
        assert len(served.get_data()) > 1000


def test_swagger_assets_cannot_escape_their_folder(client):
    for path in ("/api/docs/assets/../../../etc/passwd", "/api/docs/assets/%2e%2e/%2e%2e/etc/passwd"):
        response = client.get(path)
        assert response.status_code == 404
        assert "root:" not in response.get_data(as_text=True)
    assert_problem(client.get("/api/docs/assets/no-such-file.js"), 404)


# -- never a stack trace -----------------------------------------------------------------


def test_no_answer_ever_contains_a_traceback(client, user_headers, admin_headers):
    responses = [
        client.get("/api/nope/"),
        client.get("/api/users/99999999999999999999/", headers=admin_headers),
        client.get("/api/products/?page=abc&page_size=-1"),
        client.get("/api/products/?min_price=1e999999&max_price=NaN"),
        client.get(ME, headers={"Authorization": "Bearer a.b.c"}),
        client.get(ME, headers={"Authorization": "Bearer " + "A" * 5000}),
        client.get(ME, headers={"Authorization": "Bearer ..."}),
        client.post(LOGIN, data=b"{", content_type="application/json"),
        client.post(LOGIN, data=b"\x00\x01\x02", content_type="application/json"),
        client.post(LOGIN, json={"username": {"$gt": ""}, "password": ["x"]}),
        client.post(REGISTER, json={"username": None, "email": 5, "password": False}),
        client.patch(ME, json={"email": ["a@b.co"]}, headers=user_headers),
        client.open("/api/users/me/", method="TRACE"),
        client.delete("/api/auth/register/"),
    ]
    for response in responses:
        text = response.get_data(as_text=True)
        assert "Traceback" not in text
        assert 'File "' not in text
        assert response.status_code < 500, text[:300]
        assert response.headers["Content-Type"] == PROBLEM, (response.status_code, text[:200])


# -- CORS --------------------------------------------------------------------------------


@pytest.fixture
def cors_client(app):
    cors_app = create_app(TestingConfig, CORS_ORIGINS=["https://shop.example"])
    yield cors_app.test_client()
    with cors_app.app_context():
        db.engine.dispose()
    # The limiter follows the app bound last: give it back to the session's app.
    limiter.init_app(app)


def test_cors_allows_only_configured_origins(cors_client):
    allowed = cors_client.get("/api/openapi.json", headers={"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in allowed.headers["Vary"]
    assert "X-Request-ID" in allowed.headers["Access-Control-Expose-Headers"]

    for origin in (
        "https://evil.example",
        "https://shop.example.evil.example",
        "http://shop.example",
        "null",
    ):
        refused = cors_client.get("/api/openapi.json", headers={"Origin": origin})
        assert refused.status_code == 200
        assert "Access-Control-Allow-Origin" not in refused.headers, origin

    # Errors carry the header too, so a browser client can read the problem.
    problem = cors_client.get("/api/nope/", headers={"Origin": "https://shop.example"})
    assert problem.status_code == 404
    assert problem.headers["Access-Control-Allow-Origin"] == "https://shop.example"


def test_cors_preflight(cors_client):
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    response = cors_client.options("/api/auth/login/", headers=preflight)
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()

    refused = cors_client.options("/api/auth/login/", headers={**preflight, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Methods" not in refused.headers
