"""Wishlist: made on first use; adding a product twice is idempotent; one's own lines only."""

from __future__ import annotations

import pytest

from tests.factories import ProductFactory
from tests.helpers import assert_problem, new_customer

ITEM_FIELDS = {"id", "product_id", "created_at"}


def _wishlist(client, headers):
    response = client.get("/api/wishlist/", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _add(client, headers, product_id):
    return client.post("/api/wishlist/items/", json={"product_id": product_id}, headers=headers)


def test_anonymous_is_401(client):
    product = ProductFactory()
    assert_problem(client.get("/api/wishlist/"), 401)
    assert_problem(client.post("/api/wishlist/items/", json={"product_id": product.id}), 401)
    assert_problem(client.delete("/api/wishlist/items/1/"), 401)


def test_wishlist_is_made_on_first_use(client, user_headers):
    wishlist = _wishlist(client, user_headers)
    assert set(wishlist) == {"id", "items"}
    assert isinstance(wishlist["id"], int) and wishlist["items"] == []
    assert _wishlist(client, user_headers) == wishlist
    same = client.get("/api/wishlist", headers=user_headers)  # no final slash, no redirect
    assert same.status_code == 200 and same.get_json() == wishlist


def test_wishlist_lifecycle(client, user_headers):
    first, second = ProductFactory(), ProductFactory()

    added = _add(client, user_headers, first.id)
    assert added.status_code == 201, added.get_json()
    item = added.get_json()
    assert set(item) == ITEM_FIELDS
    assert item["product_id"] == first.id and item["created_at"].endswith("Z")

    # Adding it again changes nothing and answers with the existing line.
    again = _add(client, user_headers, first.id)
    assert again.status_code == 200, again.get_json()
    assert again.get_json() == item

    other = _add(client, user_headers, second.id)
    assert other.status_code == 201
    wishlist = _wishlist(client, user_headers)
    assert wishlist["items"] == [item, other.get_json()]

    removed = client.delete(f"/api/wishlist/items/{item['id']}/", headers=user_headers)
    assert removed.status_code == 204 and removed.data == b""
    assert _wishlist(client, user_headers)["items"] == [other.get_json()]
    assert_problem(client.delete(f"/api/wishlist/items/{item['id']}/", headers=user_headers), 404)

    # Without the final slash.
    readded = client.post("/api/wishlist/items", json={"product_id": first.id}, headers=user_headers)
    assert readded.status_code == 201
    assert readded.get_json()["id"] != item["id"]
    gone = client.delete(f"/api/wishlist/items/{readded.get_json()['id']}", headers=user_headers)
    assert gone.status_code == 204
    assert _wishlist(client, user_headers)["items"] == [other.get_json()]


def test_unknown_product_is_404(client, user_headers):
    assert_problem(_add(client, user_headers, 987654), 404)
    assert _wishlist(client, user_headers)["items"] == []


@pytest.mark.parametrize("body", [{}, {"product_id": None}, {"product_id": "1"}, {"product_id": 0}])
def test_add_validation(client, user_headers, body):
    problem = assert_problem(client.post("/api/wishlist/items/", json=body, headers=user_headers), 422)
    assert "product_id" in problem["errors"]


def test_another_users_item_is_404_and_untouched(client, user_headers):
    _, other_headers = new_customer(client)
    product = ProductFactory()
    item = _add(client, user_headers, product.id).get_json()

    assert_problem(client.delete(f"/api/wishlist/items/{item['id']}/", headers=other_headers), 404)
    assert _wishlist(client, user_headers)["items"] == [item]

    # The other user's own wishlist is separate: the same product is a new line there.
    theirs = _add(client, other_headers, product.id)
    assert theirs.status_code == 201 and theirs.get_json()["id"] != item["id"]
    assert _wishlist(client, other_headers)["id"] != _wishlist(client, user_headers)["id"]
