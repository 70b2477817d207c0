"""Domain errors, and the one place that turns any error into application/problem+json.

Services raise ``DomainError`` subclasses; HTTP, validation, rate-limit and unexpected errors
are all rendered here as RFC 9457 problem details, so no HTML page or stack trace ever reaches
a client.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, current_app, g, request
from flask_limiter.errors import RateLimitExceeded
from marshmallow import INCLUDE, Schema, fields
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error answer carries them."""

    class Meta:
        unknown = INCLUDE  # RFC 9457 extension members: the short products of a 409, a 503's checks

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    request_id = fields.String()
    errors = fields.Dict(keys=fields.String(), metadata={"description": "field -> messages"})


class ProblemJsonPlugin(BasePlugin):
    """apispec plugin: every response documented with the problem schema is served as
    application/problem+json (flask-smorest would document it as application/json)."""

    _PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

    def _as_problem_json(self, response: Any) -> None:
        content = response.get("content") if isinstance(response, dict) else None
        if content and content.get("application/json", {}).get("schema") == self._PROBLEM_REF:
            content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")

    def response_helper(self, response: dict, **kwargs: Any) -> None:
        self._as_problem_json(response)

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                self._as_problem_json(response)


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


class InsufficientStock(Conflict):
    title = "Insufficient stock"


class InvalidTransition(Conflict):
    title = "Illegal state change"


class ValidationFailed(DomainError):
    status = 422
    title = "Validation failed"

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None) -> None:
        super().__init__(detail or "The request contains invalid fields.", errors=errors)


class ServiceUnavailable(DomainError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": detail or phrase,
    }
    request_id = g.get("request_id") if g else None
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_CONTENT_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten_validation_messages(messages: Any) -> dict[str, Any]:
    """webargs nests messages under their location ({"json": {...}}); the contract does not."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, field_messages in messages.items():
        if isinstance(field_messages, dict):
            flat.update(field_messages)
        else:
            flat[location] = field_messages if isinstance(field_messages, list) else [str(field_messages)]
    return flat


def handle_domain_error(error: DomainError) -> Response:
    headers = {}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        # RFC 9110: every 401 names its scheme, as flask-jwt-extended's 401s already do.
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return problem(error.status, error.detail, title=error.title, headers=headers, **error.extra)


def _as_routed_with_final_slash(error: HTTPException) -> HTTPException:
    """Werkzeug answers 404 for ``DELETE /api/users/me`` (no slash, no such method) but 405 for
    ``DELETE /api/users/me/``; both spellings of a path must answer alike."""
    if error.code != 404 or request.url_rule is not None or request.path.endswith("/"):
        return error
    try:
        current_app.create_url_adapter(request).match(request.path + "/", method=request.method)
    except MethodNotAllowed as slash_error:
        return slash_error
    except HTTPException:
        pass
    return error


def handle_http_exception(error: HTTPException) -> Response:
    error = _as_routed_with_final_slash(error)
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    messages = data.get("messages")
    if messages is not None and status == 400:
        detail = "The request body is not valid JSON."
        return problem(status, detail, headers=headers)
    if messages is not None:
        return problem(
            status,
            "The request contains invalid fields.",
            title="Validation failed",
            headers=headers,
            errors=_flatten_validation_messages(messages),
        )
    detail = data.get("message") or error.description
    return problem(status, detail, headers=headers)


def handle_rate_limit(error: RateLimitExceeded) -> Response:
    retry_after = "60"
    limit = getattr(error, "limit", None)
    if limit is not None:
        retry_after = str(limit.limit.get_expiry())
    return problem(
        429,
        f"Too many requests: the limit is {error.description}.",
        headers={"Retry-After": retry_after},
    )


def handle_database_unavailable(error: DBAPIError) -> Response:
    # A connection-level failure (database down, failover in progress): retryable.
    if isinstance(error, OperationalError) or error.connection_invalidated:
        log.warning("database unavailable: %s", error.orig)
        return problem(503, "The database is unavailable, try again shortly.", headers={"Retry-After": "5"})
    return handle_unexpected(error)


def handle_pool_exhausted(error: PoolTimeout) -> Response:
    # Every pooled connection stayed busy for DB_POOL_TIMEOUT: the instance is saturated, not
    # broken. The client may retry; the alert on pool saturation tells the operator.
    log.warning("database pool exhausted: %s", error)
    return problem(503, "The shop is busy, try again shortly.", headers={"Retry-After": "2"})


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error", exc_info=error)
    return problem(500, "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DBAPIError, handle_database_unavailable)
    app.register_error_handler(PoolTimeout, handle_pool_exhausted)
    app.register_error_handler(Exception, handle_unexpected)
