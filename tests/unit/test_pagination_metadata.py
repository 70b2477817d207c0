"""X-Pagination is built without flask-smorest's schema dump: it must stay what smorest writes."""

from __future__ import annotations

import json

import pytest
from flask_smorest.pagination import PaginationMixin

from ecommerce.core.blueprint import _pagination_metadata


@pytest.mark.parametrize("total", [0, 1, 5, 19, 20, 21, 100, 101, 12345])
@pytest.mark.parametrize("page_size", [1, 5, 20, 100])
def test_the_metadata_is_byte_for_byte_smorests(total, page_size):
    for page in range(1, 10):
        ours = json.dumps(_pagination_metadata(page, page_size, total))
        theirs = json.dumps(PaginationMixin._make_pagination_metadata(page, page_size, total))
        assert ours == theirs, (page, page_size, total)
