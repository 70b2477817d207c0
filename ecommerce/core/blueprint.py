"""The project's one Blueprint subclass: auth and roles in one place, documented the same way,
and every response shaped once, by the view's own response schema.

Every route that needs a user says ``@blp.auth()`` (any signed-in user) or
``@blp.auth(role=Role.ADMIN)``; the decorator verifies the JWT, loads the user, enforces the
role and documents the bearer scheme with its 401/403 answers in OpenAPI. A path with an id
documents its 404, a JSON body the 400/413/415 of middleware.py, and every error answer is
documented as problem+json. Pagination answers carry an RFC 8288 ``Link`` header beside smorest's
``X-Pagination``.

The schema given to ``response`` (or ``cached_response``) is the one place a response's shape is
defined: ``cached_response`` dumps a catalog ``CacheEntry`` with it before the finished JSON is
cached, and ``idempotent`` stores the response an ``Idempotency-Key`` replays with it.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import flask_smorest
import marshmallow as ma
from cachetools import LRUCache
from flask import request
from flask_smorest.utils import resolve_schema_instance
from webargs.flaskparser import FlaskParser

from ecommerce.core.cache.entries import CacheEntry
from ecommerce.core.idempotency import ResponseShape, idempotent
from ecommerce.core.tokens import current_user, verify_request_token
from ecommerce.errors import Forbidden, ProblemSchema

BODY_ERRORS = (
    (400, "The body is not valid JSON"),
    (413, "The body is larger than MAX_CONTENT_LENGTH"),
    (415, "The body is not application/json"),
)


_SHAPE = "_ecommerce_response_shape"  # on a view function: its success status and schema
# On a view function that takes a multipart/form-data upload: the setting of its body limit
# (middleware.py reads it before the body is).
UPLOAD_LIMIT_SETTING = "_ecommerce_upload_limit_setting"


# Query strings whose parsed arguments each parser remembers (a few hundred bytes each), and
# the longest one remembered: the catalog's own links are far shorter, while a client could send
# unique strings of up to gunicorn's request-line limit (4 KB) and fill the memory with them.
QUERY_MEMORY_ENTRIES = 4096
QUERY_MEMORY_MAX_BYTES = 512


class SharedSchemaParser(FlaskParser):
    """webargs builds a new instance of a Schema class for every request it parses (field
    deep copies included: an eighth of a cached list read). The argument schemas hold no
    per-request state, so one instance per class serves every request (smorest's pagination
    parameters are a Schema class; ``arguments`` below passes instances).

    Arguments read from the query string are also remembered per schema and query string: the
    same pages of a catalog are asked for again and again, and loading them through marshmallow
    was 16% of a cached list page's CPU time (docs/performance_tuning.md, "Reads at the
    floor"). Loading is a function of the query string alone, so the answer is the same; each
    request gets its own shallow copy (a dict, or smorest's ``PaginationParameters``, whose
    ``item_count`` the view sets), and the values in it are immutable (numbers, strings,
    booleans, decimals). A query string that does not validate raises, as before, and is not
    remembered; nor is one longer than QUERY_MEMORY_MAX_BYTES, nor arguments with a validator
    of their own (``validate=``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._instances: dict[type, ma.Schema] = {}
        self._loaded: LRUCache = LRUCache(maxsize=QUERY_MEMORY_ENTRIES)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe

    def parse(self, argmap: Any, req: Any = None, *, location: str | None = None, **kwargs: Any) -> Any:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._instances.get(argmap)
            if schema is None:
                schema = self._instances[argmap] = argmap()
            argmap = schema
        query_string = (req if req is not None else request).query_string
        if (
            location != "query"
            or not isinstance(argmap, ma.Schema)
            or kwargs.get("error_headers")
            or len(query_string) > QUERY_MEMORY_MAX_BYTES
            or kwargs.get("validate") is not None  # a function, or a list of them: not a key
        ):
            return super().parse(argmap, req, location=location, **kwargs)
        key = (
            argmap,
            query_string,
            kwargs.get("unknown"),
            kwargs.get("error_status_code"),
        )
        with self._lock:
            loaded = self._loaded.get(key)
        if loaded is None:
            loaded = super().parse(argmap, req, location=location, **kwargs)
            with self._lock:
                self._loaded[key] = loaded
        return copy.copy(loaded)


class Blueprint(flask_smorest.Blueprint):
    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 20, "max_page_size": 100}
    ARGUMENTS_PARSER = SharedSchemaParser()
    PAGINATION_ARGUMENTS_PARSER = SharedSchemaParser()

    def route(self, rule: str, **options: Any) -> Callable:
        """Register a view; on a path with an id every method also documents its 404."""
        register = super().route(rule, **options)
        if "<" not in rule:
            return register

        def decorator(view: Any) -> Any:
            for method in getattr(view, "methods", None) or ():
                name = method.lower()
                documented = self.alt_response(404, description="No such resource, or not yours")
                setattr(view, name, documented(getattr(view, name)))
            return register(view)

        return decorator

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Callable:
        """Parse arguments; a JSON body also documents the answers of middleware.py's body rules.

        A body whose schema requires no field may be left out (it reads as ``{}``), and is
        documented so."""
        schema = resolve_schema_instance(schema)
        if location != "json":
            return super().arguments(schema, location=location, **kwargs)
        kwargs.setdefault("required", any(field.required for field in schema.fields.values()))
        parse = super().arguments(schema, location=location, **kwargs)

        def decorator(func: Callable) -> Callable:
            func = parse(func)
            for status, description in BODY_ERRORS:
                func = self.alt_response(status, description=description)(func)
            return func

        return decorator

    def upload(self, schema: Any, *, max_bytes_setting: str) -> Callable:
        """Parse a ``multipart/form-data`` body into ``schema`` (its file fields), as the only
        body this view takes: middleware.py lets it through instead of asking for JSON, and
        refuses it with 413 above the ``max_bytes_setting`` setting rather than
        MAX_CONTENT_LENGTH."""
        parse = super().arguments(resolve_schema_instance(schema), location="files")

        def decorator(func: Callable) -> Callable:
            func = parse(func)
            setattr(func, UPLOAD_LIMIT_SETTING, max_bytes_setting)
            func = self.alt_response(400, description="A multipart/form-data body without its boundary")(func)
            func = self.alt_response(413, description=f"The file is larger than {max_bytes_setting}")(func)
            return self.alt_response(415, description="Not multipart/form-data, or not a supported file")(
                func
            )

        return decorator

    def response(self, status_code, schema=None, **kwargs: Any) -> Callable:
        """smorest's ``response``; the view also remembers its status and schema, for the
        response an ``Idempotency-Key`` stores (``idempotent``)."""
        schema = resolve_schema_instance(schema)
        register = super().response(status_code, schema, **kwargs)

        def decorator(func: Callable) -> Callable:
            wrapper = register(func)
            setattr(wrapper, _SHAPE, ResponseShape(int(status_code), schema.dump if schema else None))
            return wrapper

        return decorator

    def cached_response(self, status_code, schema, **doc: Any) -> Callable:
        """``response`` for a view that returns a catalog ``CacheEntry``: the data read on a miss
        is dumped with ``schema`` and cached as finished JSON; a hit sends the stored bytes with
        their ETag (304 for a matching If-None-Match). Place it below ``paginate``: a cached
        page carries its total, from which the pagination headers are made."""
        schema = resolve_schema_instance(schema)

        def decorator(func: Callable) -> Callable:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                entry: CacheEntry = func(*args, **kwargs)
                cached = entry.json(schema.dump)
                page = kwargs.get("pagination_parameters")
                if page is not None:
                    page.item_count = cached.total
                return cached.to_response()

            return self.response(status_code, schema, **doc)(wrapper)

        return decorator

    def alt_response(self, status_code, response=None, *, schema=None, **kwargs: Any) -> Callable:
        """An error answer is documented as the problem+json it is, unless told otherwise."""
        if response is None and schema is None and int(status_code) >= 400:
            schema = ProblemSchema
        return super().alt_response(status_code, response, schema=schema, **kwargs)

    def auth(self, role: str | None = None, *, refresh: bool = False) -> Callable:
        """Require a valid access (or refresh) token, and optionally a role."""

        def decorator(func: Callable) -> Callable:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                verify_request_token(refresh=refresh)
                if role is not None and current_user.role != role:
                    raise Forbidden(f"This action needs the {role} role.")
                return func(*args, **kwargs)

            wrapper = self.doc(security=[{"bearerAuth": []}])(wrapper)
            wrapper = self.alt_response(
                401, schema=ProblemSchema, description="Missing, invalid, expired or revoked token"
            )(wrapper)
            if role is not None:
                wrapper = self.alt_response(403, schema=ProblemSchema, description=f"Needs the {role} role")(
                    wrapper
                )
            return wrapper

        return decorator

    def idempotent(self, scope: str) -> Callable:
        """Honour ``Idempotency-Key`` (place after ``auth``: keys are kept per user; above
        ``response``, whose schema shapes the stored response)."""

        def decorator(func: Callable) -> Callable:
            shape = getattr(func, _SHAPE, None)
            if shape is None or shape.dump is None:
                raise TypeError(
                    f"{func.__qualname__}: put @blp.idempotent above @blp.response(status, schema)"
                )
            wrapper = idempotent(scope, shape)(func)
            wrapper = self.doc(
                parameters=[
                    {
                        "in": "header",
                        "name": "Idempotency-Key",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 255},
                        "description": "Retries with the same key and body replay the first "
                        "response (Idempotent-Replayed: true) for 24 hours.",
                    }
                ]
            )(wrapper)
            wrapper = self.alt_response(
                409, schema=ProblemSchema, description="Conflict, or the same key still running"
            )(wrapper)
            return self.alt_response(
                422, schema=ProblemSchema, description="Invalid body, or the key reused with another body"
            )(wrapper)

        return decorator

    def _set_pagination_metadata(self, page_params, result, headers):
        """``X-Pagination`` (smorest's metadata, in its field order) and an RFC 8288 ``Link``
        header with the first, previous, next and last pages. Built directly: smorest's own
        path makes a schema instance and a JSON round trip per request. (The method is
        smorest's customisation point for pagination metadata; its own test suite overrides
        it the same way.)"""
        if headers is None:
            headers = {}
        pagination, link = _pagination_headers(
            request.base_url,
            request.query_string,
            page_params.page,
            page_params.page_size,
            page_params.item_count,
        )
        headers[self.PAGINATION_HEADER_NAME] = pagination
        if link is not None:
            headers["Link"] = link
        return result, headers


# Remembered per page of a list (the headers are a function of the URL and the total alone):
# building the four Link URLs was 14% of a cached list page's CPU time. Not for URLs longer than
# QUERY_MEMORY_MAX_BYTES (the base carries the client's Host header).
_PAGINATION_HEADERS: LRUCache = LRUCache(maxsize=QUERY_MEMORY_ENTRIES)
_PAGINATION_LOCK = threading.Lock()


def _pagination_headers(
    base: str, query: bytes, page: int, page_size: int, item_count: int
) -> tuple[str, str | None]:
    """The ``X-Pagination`` value and the ``Link`` value (None without pages) of one page."""
    key = (base, query, page, page_size, item_count)
    remember = len(base) + len(query) <= QUERY_MEMORY_MAX_BYTES
    if remember:
        with _PAGINATION_LOCK:
            made = _PAGINATION_HEADERS.get(key)
        if made is not None:
            return made
    meta = _pagination_metadata(page, page_size, item_count)
    link = None
    if "first_page" in meta:
        args = request.args.to_dict(flat=False)

        def url(number: int) -> str:
            args["page"] = [str(number)]
            return f"{base}?{urlencode(args, doseq=True)}"

        link = ", ".join(
            f'<{url(meta[key])}>; rel="{rel}"'
            for rel, key in (
                ("first", "first_page"),
                ("prev", "previous_page"),
                ("next", "next_page"),
                ("last", "last_page"),
            )
            if key in meta
        )
    made = (json.dumps(meta), link)
    if remember:
        with _PAGINATION_LOCK:
            _PAGINATION_HEADERS[key] = made
    return made


def _pagination_metadata(page: int, page_size: int, item_count: int) -> dict[str, int]:
    """What flask-smorest's ``_make_pagination_metadata`` answers, without its schema dump."""
    if item_count == 0:
        return {"total": 0, "total_pages": 0}
    last_page = (item_count - 1) // page_size + 1
    meta = {"total": item_count, "total_pages": last_page, "first_page": 1, "last_page": last_page}
    if page <= last_page:
        meta["page"] = page
        if page > 1:
            meta["previous_page"] = page - 1
        if page < last_page:
            meta["next_page"] = page + 1
    return meta
