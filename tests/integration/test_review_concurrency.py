"""Forty reviewers at once: the product's rating aggregate stays exact."""

from __future__ import annotations

import random
from decimal import ROUND_HALF_UP, Decimal

from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.reviews.models import Review
from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, login, run_concurrently

REVIEWERS = 40


def test_concurrent_reviews_keep_the_aggregate_exact(make_instance):
    # Two instances, so that all forty transactions can be open at once (one pool holds 20).
    a, b = make_instance(), make_instance()
    with a.app_context():
        product_id = ProductFactory().id
        usernames = [UserFactory().username for _ in range(REVIEWERS)]
    setup_client = a.test_client()
    tokens = [login(setup_client, name)["access_token"] for name in usernames]
    ratings = [random.Random(n).randint(1, 5) for n in range(REVIEWERS)]
    url = f"/api/products/{product_id}/"
    # Warm the cache, so the purge after each review is exercised too.
    assert setup_client.get(url).get_json()["rating_count"] == 0

    clients = [(a, b)[n % 2].test_client() for n in range(REVIEWERS)]
    calls = [
        lambda c=c, t=t, r=r: c.post(f"{url}reviews/", json={"rating": r, "comment": "x"}, headers=bearer(t))
        for c, t, r in zip(clients, tokens, ratings, strict=True)
    ]
    responses = run_concurrently(calls)

    assert [r.status_code for r in responses] == [201] * REVIEWERS, [
        r.get_json() for r in responses if r.status_code != 201
    ]
    expected_sum = sum(ratings)
    expected_avg = (Decimal(expected_sum) / REVIEWERS).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    with a.app_context():
        product = db.session.get(Product, product_id)
        assert product.rating_count == REVIEWERS
        assert product.rating_sum == expected_sum
        assert product.rating_avg == expected_avg
        assert db.session.query(Review).filter_by(product_id=product_id).count() == REVIEWERS

    for client in (a.test_client(), b.test_client()):
        detail = client.get(url).get_json()
        assert detail["rating_count"] == REVIEWERS
        assert detail["rating_avg"] == float(expected_avg)
