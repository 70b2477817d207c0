"""Reviews: the lifecycle walk, and the product's rating aggregate following every change."""

from __future__ import annotations

import pytest

from tests.factories import ProductFactory, ReviewFactory
from tests.helpers import assert_pagination, assert_problem, new_customer

REVIEW_FIELDS = {"id", "product_id", "user_id", "username", "rating", "comment", "created_at", "updated_at"}


def _aggregate(client, product_id):
    """The rating aggregate as clients see it: through the cached product detail."""
    response = client.get(f"/api/products/{product_id}/")
    assert response.status_code == 200
    product = response.get_json()
    return product["rating_avg"], product["rating_count"]


def test_review_lifecycle(client, redis_client, user, user_headers, admin_headers):
    product = ProductFactory()
    reviews_url = f"/api/products/{product.id}/reviews/"
    second, second_headers = new_customer(client)
    third, third_headers = new_customer(client)

    # Warm the cache: the detail is served from Redis from here on until a write purges it.
    assert _aggregate(client, product.id) == (0, 0)
    assert redis_client.keys(f"*product:{product.id}")

    assert_problem(client.post(reviews_url, json={"rating": 5}), 401)

    created = client.post(reviews_url, json={"rating": 4, "comment": "Solid"}, headers=user_headers)
    assert created.status_code == 201
    first_review = created.get_json()
    assert set(first_review) == REVIEW_FIELDS
    assert first_review["rating"] == 4 and first_review["comment"] == "Solid"
    assert first_review["product_id"] == product.id and first_review["user_id"] == user.id
    assert first_review["username"] == user.username
    assert first_review["created_at"].endswith("Z")
    # The cached detail shows the new aggregate on the very next read.
    assert _aggregate(client, product.id) == (4.0, 1)

    second_review = client.post(reviews_url, json={"rating": 5}, headers=second_headers).get_json()
    assert second_review["comment"] == ""
    assert _aggregate(client, product.id) == (4.5, 2)
    third_review = client.post(reviews_url, json={"rating": 2, "comment": "Meh"}, headers=third_headers)
    third_review = third_review.get_json()
    assert _aggregate(client, product.id) == (3.67, 3)  # 11 / 3, two decimals

    # One review per user and product.
    again = client.post(reviews_url, json={"rating": 1}, headers=user_headers)
    assert_problem(again, 409)
    assert _aggregate(client, product.id) == (3.67, 3)

    # Newest first.
    listed = client.get(reviews_url)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.get_json()] == [
        third_review["id"],
        second_review["id"],
        first_review["id"],
    ]
    assert listed.get_json()[2] == first_review
    assert_pagination(listed, total=3)
    assert client.get(reviews_url.rstrip("/")).get_json() == listed.get_json()  # no redirect
    assert client.get(f"/api/reviews/{first_review['id']}/").get_json() == first_review

    # The author edits: the aggregate moves by the difference.
    edited = client.patch(
        f"/api/reviews/{first_review['id']}/", json={"rating": 1, "comment": "Broke"}, headers=user_headers
    )
    assert edited.status_code == 200
    assert edited.get_json()["rating"] == 1 and edited.get_json()["comment"] == "Broke"
    assert _aggregate(client, product.id) == (2.67, 3)  # 8 / 3
    # A comment-only edit leaves it alone.
    comment_only = client.patch(
        f"/api/reviews/{first_review['id']}/", json={"comment": "Broke after a week"}, headers=user_headers
    )
    assert comment_only.status_code == 200 and comment_only.get_json()["rating"] == 1
    assert _aggregate(client, product.id) == (2.67, 3)

    # Another customer may not touch it; anonymous is 401.
    assert_problem(
        client.patch(f"/api/reviews/{first_review['id']}/", json={"rating": 5}, headers=second_headers), 403
    )
    assert_problem(client.delete(f"/api/reviews/{first_review['id']}/", headers=second_headers), 403)
    assert_problem(client.patch(f"/api/reviews/{first_review['id']}/", json={"rating": 5}), 401)
    assert_problem(client.delete(f"/api/reviews/{first_review['id']}/"), 401)
    assert _aggregate(client, product.id) == (2.67, 3)

    # An admin may edit and delete anyone's review.
    moderated = client.patch(
        f"/api/reviews/{second_review['id']}/", json={"rating": 3}, headers=admin_headers
    )
    assert moderated.status_code == 200
    assert moderated.get_json()["user_id"] == second.id and moderated.get_json()["rating"] == 3
    assert _aggregate(client, product.id) == (2.0, 3)  # 1 + 3 + 2
    assert client.delete(f"/api/reviews/{third_review['id']}/", headers=admin_headers).status_code == 204
    assert _aggregate(client, product.id) == (2.0, 2)  # 1 + 3
    assert third.id != user.id

    # The author deletes: count and average come back.
    assert client.delete(f"/api/reviews/{first_review['id']}/", headers=user_headers).status_code == 204
    assert _aggregate(client, product.id) == (3.0, 1)
    assert_problem(client.get(f"/api/reviews/{first_review['id']}/"), 404)
    assert [r["id"] for r in client.get(reviews_url).get_json()] == [second_review["id"]]
    # Deleting frees the slot: the author may review again.
    assert client.post(reviews_url, json={"rating": 5}, headers=user_headers).status_code == 201
    assert _aggregate(client, product.id) == (4.0, 2)

    for review in client.get(reviews_url).get_json():
        assert client.delete(f"/api/reviews/{review['id']}/", headers=admin_headers).status_code == 204
    assert _aggregate(client, product.id) == (0, 0)
    assert client.get(reviews_url).get_json() == []


def test_review_pagination_newest_first(client):
    product = ProductFactory()
    ids = [ReviewFactory(product_id=product.id, rating=1 + n % 5).id for n in range(5)]
    response = client.get(f"/api/products/{product.id}/reviews/?page=2&page_size=2")
    assert response.status_code == 200
    assert [r["id"] for r in response.get_json()] == [ids[2], ids[1]]
    assert_pagination(response, total=5, page=2, page_size=2)
    assert "page_size=2" in response.headers["Link"]
    last = client.get(f"/api/products/{product.id}/reviews/?page=3&page_size=2")
    assert [r["id"] for r in last.get_json()] == [ids[0]]
    assert assert_problem(client.get(f"/api/products/{product.id}/reviews/?page_size=101"), 422)


def test_the_product_list_follows_the_aggregate(client, user_headers):
    product = ProductFactory()
    url = f"/api/products/?category={product.category_id}"
    assert client.get(url).get_json()[0]["rating_count"] == 0  # now cached
    created = client.post(f"/api/products/{product.id}/reviews/", json={"rating": 5}, headers=user_headers)
    assert created.status_code == 201
    listed = client.get(url).get_json()[0]
    assert (listed["rating_avg"], listed["rating_count"]) == (5.0, 1)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": "5"}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({"rating": None}, "rating"),
        ({}, "rating"),
        ({"rating": 4, "comment": "x" * 5001}, "comment"),
        ({"rating": 4, "unknown_field": 1}, "unknown_field"),
    ],
)
def test_review_validation(client, user_headers, body, field):
    product = ProductFactory()
    response = client.post(f"/api/products/{product.id}/reviews/", json=body, headers=user_headers)
    problem = assert_problem(response, 422)
    assert field in problem["errors"]
    assert _aggregate(client, product.id) == (0, 0)


@pytest.mark.parametrize("body", [{"rating": 0}, {"rating": 6}, {"rating": "5"}])
def test_review_update_validation(client, user, user_headers, body):
    review = ReviewFactory(user_id=user.id, rating=4)
    problem = assert_problem(client.patch(f"/api/reviews/{review.id}/", json=body, headers=user_headers), 422)
    assert "rating" in problem["errors"]


def test_unknown_product_and_review_are_404(client, user_headers, admin_headers):
    assert_problem(client.get("/api/products/987654/reviews/"), 404)
    assert_problem(
        client.post("/api/products/987654/reviews/", json={"rating": 5}, headers=user_headers), 404
    )
    assert_problem(client.get("/api/reviews/987654/"), 404)
    assert_problem(client.patch("/api/reviews/987654/", json={"rating": 5}, headers=user_headers), 404)
    assert_problem(client.patch("/api/reviews/987654/", json={"rating": 5}, headers=admin_headers), 404)
    assert_problem(client.delete("/api/reviews/987654/", headers=admin_headers), 404)
    assert_problem(client.get("/api/reviews/99999999999999999/"), 404)
