"""Arguments read from a query string, and a page's pagination headers, are remembered per query
string (ecommerce/core/blueprint.py): each request must still get answers of its own, and a
query string that does not validate must keep failing."""

from __future__ import annotations

import pytest
from flask import Flask
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema, fields, post_load, validate

from ecommerce.core.blueprint import (
    _PAGINATION_HEADERS,
    QUERY_MEMORY_MAX_BYTES,
    SharedSchemaParser,
    _pagination_headers,
)


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=20)

    @post_load
    def _make(self, data, **kwargs):
        return PaginationParameters(**data)


class Filters(Schema):
    sort = fields.String(validate=validate.OneOf(["name", "price"]))
    in_stock = fields.Boolean()


class Refused(Exception):
    pass


@pytest.fixture
def parser():
    parser = SharedSchemaParser()

    @parser.error_handler
    def _refuse(error, *args, **kwargs):
        raise Refused(error.messages)

    return parser


def _parse(parser, schema, query: str):
    with Flask(__name__).test_request_context("/things/?" + query):
        return parser.parse(schema, location="query")


def test_each_request_gets_its_own_copy(parser):
    first = _parse(parser, PageArgs, "page=3&page_size=5")
    first.item_count = 99  # what a view does with its pagination parameters
    second = _parse(parser, PageArgs, "page=3&page_size=5")
    assert second is not first
    assert (second.page, second.page_size, second.item_count) == (3, 5, None)

    schema = Filters()
    filters = _parse(parser, schema, "sort=price&in_stock=true")
    filters["sort"] = "name"
    assert _parse(parser, schema, "sort=price&in_stock=true") == {"sort": "price", "in_stock": True}
    assert _parse(parser, schema, "sort=name") == {"sort": "name"}


def test_a_query_that_does_not_validate_fails_every_time(parser):
    for _ in range(3):
        with pytest.raises(Refused):
            _parse(parser, Filters(), "sort=colour")
        with pytest.raises(Refused):
            _parse(parser, PageArgs, "page=0")


def test_pagination_headers_follow_the_total_and_the_query():
    with Flask(__name__).test_request_context("/api/products/?sort=name&page=2"):
        pagination, link = _pagination_headers("http://shop/api/products/", b"sort=name&page=2", 2, 20, 45)
        assert '"total": 45' in pagination and '"page": 2' in pagination
        assert '<http://shop/api/products/?sort=name&page=3>; rel="next"' in link
        # One more product: the same URL, another total, other headers.
        pagination, link = _pagination_headers("http://shop/api/products/", b"sort=name&page=2", 2, 20, 41)
        assert '"total_pages": 3' in pagination
        pagination, link = _pagination_headers("http://shop/api/products/", b"sort=name&page=2", 2, 20, 40)
        assert '"total_pages": 2' in pagination and 'rel="next"' not in link
        _, none = _pagination_headers("http://shop/api/products/", b"sort=name&page=2", 2, 20, 0)
        assert none is None


def test_only_sane_query_strings_are_remembered(parser):
    # A client could send unique query strings of kilobytes each: those are parsed, never kept.
    schema = Filters()
    junk = "&".join(f"x{number}=y" for number in range(200))  # unknown keys: dropped by the schema
    assert len(junk) > QUERY_MEMORY_MAX_BYTES
    assert _parse(parser, schema, "sort=name&" + junk) == {"sort": "name"}
    assert len(parser._loaded) == 0
    assert _parse(parser, schema, "sort=name") == {"sort": "name"}
    assert len(parser._loaded) == 1


def test_arguments_with_a_validator_of_their_own_are_not_remembered(parser):
    calls = []

    def whole(arguments):
        calls.append(arguments)
        return True

    for _ in range(2):
        with Flask(__name__).test_request_context("/things/?sort=price"):
            assert parser.parse(Filters(), location="query", validate=[whole]) == {"sort": "price"}
    assert len(calls) == 2  # run for each request, and a list of validators is no trouble
    assert len(parser._loaded) == 0


def test_long_pagination_urls_are_not_remembered():
    long_query = ("q=" + "x" * 600 + "&page=2").encode()
    with Flask(__name__).test_request_context("/api/products/?" + long_query.decode()):
        pagination, link = _pagination_headers("http://shop/api/products/", long_query, 2, 20, 45)
    assert '"page": 2' in pagination and "x" * 600 in link
    assert not any(key[1] == long_query for key in _PAGINATION_HEADERS.keys())
