"""Request plumbing: request id, body and content-type rules, CORS, security headers, access log.

Everything here runs for every request, before and after the view, in this order:
request id -> body-size limit -> content type -> NUL guard -> JSON guard ... view ... -> headers
-> access log.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ecommerce.core.blueprint import UPLOAD_LIMIT_SETTING
from ecommerce.core.tokens import token_user_id
from ecommerce.errors import problem

access_log = logging.getLogger("ecommerce.access")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_JSON_TYPES = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
}
# JSON answers may not be rendered as documents at all; Swagger UI needs its CDN assets.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)
# The storefront (storefront/): its own scripts, styles and API calls only; no inline code.
STOREFRONT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _assign_request_id() -> None:
    g.request_started = time.perf_counter()
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _upload_limit_setting() -> str | None:
    """The body-limit setting of the view this request goes to, when it takes an upload
    (``Blueprint.upload``), else None."""
    view = current_app.view_functions.get(request.endpoint or "")
    handler = getattr(getattr(view, "view_class", None), request.method.lower(), None)
    return getattr(handler, UPLOAD_LIMIT_SETTING, None)


def _check_upload(setting: str) -> Response | None:
    limit = current_app.config[setting]
    # werkzeug stops reading a body (chunked ones too) at this limit: 413, not a cut file.
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        return problem(413, f"The file exceeds {limit} bytes.")
    if request.mimetype != "multipart/form-data":
        return problem(415, "Send the file as multipart/form-data, in a field named file.")
    if not request.mimetype_params.get("boundary"):
        return problem(400, "The multipart/form-data body has no boundary in its Content-Type.")
    return None


def _check_body() -> Response | None:
    if request.method not in _BODY_METHODS:
        return None
    upload_setting = _upload_limit_setting()
    if upload_setting is not None:
        return _check_upload(upload_setting)
    length = request.content_length
    limit = request.max_content_length
    if length is not None and limit is not None and length > limit:
        return problem(413, f"The request body exceeds {limit} bytes.")
    has_body = bool(length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    if has_body and not _JSON_TYPES.match(request.mimetype or ""):
        return problem(415, "Send the request body as application/json.")
    if has_body and (b"\\u0000" in (data := request.get_data(cache=True)) or b"\x00" in data):
        return problem(
            422,
            "NUL characters are not allowed.",
            title="Validation failed",
            errors={"_schema": ["NUL characters are not allowed."]},
        )
    if has_body and length is None and limit is not None and len(data) >= limit:
        # A chunked body has no Content-Length to refuse up front, and werkzeug silently cuts
        # it at the limit: refuse it here instead of parsing the stump.
        return problem(413, f"The request body exceeds {limit} bytes.")
    if has_body:
        return _check_json(data)
    return None


def _check_json(data: bytes) -> Response | None:
    """Bodies that the JSON parser chokes on (deep nesting, 5000-digit numbers) or that
    hold unpaired surrogates (which no UTF-8 column can store) are client errors, not 500s."""
    try:
        json.dumps(json.loads(data), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a ValueError too, so caught first
        return problem(
            422,
            "Unpaired surrogate characters are not allowed.",
            title="Validation failed",
            errors={"_schema": ["Unpaired surrogate characters are not allowed."]},
        )
    except (ValueError, RecursionError):
        return problem(400, "The request body is not valid JSON.")
    return None


def _check_query() -> Response | None:
    if "\x00" in request.query_string.decode("latin-1") or "%00" in request.query_string.decode("latin-1"):
        return problem(
            422,
            "NUL characters are not allowed.",
            title="Validation failed",
            errors={"_schema": ["NUL characters are not allowed."]},
        )
    return None


def _cors_preflight() -> Response | None:
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        return Response(status=204)
    return None


def _add_headers(response: Response, cors_origins: list[str]) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/docs"):
        csp = DOCS_CSP
    elif request.path == "/" or request.path.startswith("/assets/"):
        csp = STOREFRONT_CSP
    else:
        csp = API_CSP
    response.headers.setdefault("Content-Security-Policy", csp)
    if "Authorization" in request.headers or request.path.startswith("/api/auth/"):
        # Tokens (RFC 6749 5.1) and one user's data: no browser or proxy cache may keep them.
        response.headers.setdefault("Cache-Control", "no-store")
    origin = request.headers.get("Origin")
    if origin and origin in cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Expose-Headers"] = (
            "X-Request-ID, X-Pagination, Link, ETag, Retry-After, Idempotent-Replayed"
        )
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, Idempotency-Key, If-None-Match, Last-Event-ID, X-Request-ID"
            )
            response.headers["Access-Control-Max-Age"] = "600"
    return response


def _log_request(response: Response) -> Response:
    started = g.get("request_started")
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
    user_id = token_user_id()  # None: no token verified for this request
    access_log.info(
        "%s %s %s %sms",
        request.method,
        request.path,
        response.status_code,
        elapsed_ms,
        extra={
            "method": request.method,
            "path": request.path,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "latency_ms": elapsed_ms,
            "user_id": user_id,
            "remote_addr": request.remote_addr,
        },
    )
    return response


def register_middleware(app: Flask) -> None:
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    cors_origins = app.config["CORS_ORIGINS"]

    # First of all, even before the rate limiter's hook (bound in register_extensions), so a 429
    # carries its request id too.
    app.before_request_funcs.setdefault(None, []).insert(0, _assign_request_id)
    app.before_request(_check_body)
    app.before_request(_check_query)
    app.before_request(_cors_preflight)
    app.after_request(lambda response: _add_headers(response, cors_origins))
    app.after_request(_log_request)
