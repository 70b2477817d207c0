"""Categories: the lifecycle walk over the tree, parent loops, conflicts and 404s."""

from __future__ import annotations

import pytest

from tests.factories import CategoryFactory, ProductFactory
from tests.helpers import assert_problem

CATEGORY_FIELDS = {"id", "name", "description", "parent_id", "created_at", "updated_at"}


def _create(client, headers, **body):
    response = client.post("/api/categories/", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_category_lifecycle(client, admin_headers, user_headers):
    body = {"name": "Garden Tools", "description": "Everything for the garden"}

    assert_problem(client.post("/api/categories/", json=body), 401)
    assert_problem(client.post("/api/categories/", json=body, headers=user_headers), 403)

    created = client.post("/api/categories/", json=body, headers=admin_headers)
    assert created.status_code == 201
    garden = created.get_json()
    assert garden["name"] == "Garden Tools" and garden["parent_id"] is None
    assert garden["description"] == "Everything for the garden"
    assert garden["children"] == []
    assert set(garden) == CATEGORY_FIELDS | {"children"}
    assert garden["created_at"].endswith("Z")

    shovels = _create(client, admin_headers, name="Shovels", parent_id=garden["id"])
    hoses = _create(client, admin_headers, name="Hoses", parent_id=garden["id"])
    assert shovels["parent_id"] == garden["id"]

    # The same name under the same parent is a conflict; under another parent it is fine.
    duplicate = client.post(
        "/api/categories/", json={"name": "Shovels", "parent_id": garden["id"]}, headers=admin_headers
    )
    assert_problem(duplicate, 409)
    kitchen = _create(client, admin_headers, name="Kitchen Tools")
    kitchen_shovels = _create(client, admin_headers, name="Shovels", parent_id=kitchen["id"])
    assert kitchen_shovels["id"] != shovels["id"]

    listed = client.get("/api/categories/")
    assert listed.status_code == 200
    items = {item["id"]: item for item in listed.get_json()}
    for category in (garden, shovels, hoses, kitchen, kitchen_shovels):
        item = items[category["id"]]
        assert set(item) == CATEGORY_FIELDS  # the list carries the tree via parent_id, no children
        assert item["name"] == category["name"] and item["parent_id"] == category["parent_id"]
    ids = [item["id"] for item in listed.get_json()]
    assert ids == sorted(ids)
    # Without the final slash: same answer, no redirect.
    assert client.get("/api/categories").get_json() == listed.get_json()

    read = client.get(f"/api/categories/{garden['id']}/")
    assert read.status_code == 200
    detail = read.get_json()
    assert detail["name"] == "Garden Tools"
    assert [child["name"] for child in detail["children"]] == ["Hoses", "Shovels"]  # by name
    assert all(child["parent_id"] == garden["id"] for child in detail["children"])
    assert all(set(child) == CATEGORY_FIELDS for child in detail["children"])

    # Rename.
    renamed = client.patch(
        f"/api/categories/{hoses['id']}/", json={"name": "Garden Hoses"}, headers=admin_headers
    )
    assert renamed.status_code == 200
    assert renamed.get_json()["name"] == "Garden Hoses" and renamed.get_json()["parent_id"] == garden["id"]
    # Renaming onto a sibling's name is the same conflict as creating it.
    taken = client.patch(f"/api/categories/{hoses['id']}/", json={"name": "Shovels"}, headers=admin_headers)
    assert_problem(taken, 409)
    assert_problem(
        client.patch(f"/api/categories/{hoses['id']}/", json={"name": "X"}, headers=user_headers), 403
    )
    assert_problem(client.patch(f"/api/categories/{hoses['id']}/", json={"name": "X"}), 401)

    # Move under another parent, then back to the top level.
    moved = client.patch(
        f"/api/categories/{hoses['id']}/", json={"parent_id": kitchen["id"]}, headers=admin_headers
    )
    assert moved.status_code == 200 and moved.get_json()["parent_id"] == kitchen["id"]
    kitchen_children = client.get(f"/api/categories/{kitchen['id']}/").get_json()["children"]
    assert {child["id"] for child in kitchen_children} == {hoses["id"], kitchen_shovels["id"]}
    garden_children = client.get(f"/api/categories/{garden['id']}/").get_json()["children"]
    assert [child["id"] for child in garden_children] == [shovels["id"]]
    # Moving Shovels into Kitchen, which already has a "Shovels", is a conflict.
    assert_problem(
        client.patch(
            f"/api/categories/{shovels['id']}/", json={"parent_id": kitchen["id"]}, headers=admin_headers
        ),
        409,
    )
    to_root = client.patch(f"/api/categories/{hoses['id']}/", json={"parent_id": None}, headers=admin_headers)
    assert to_root.status_code == 200 and to_root.get_json()["parent_id"] is None

    # Delete: children and products block it; an empty category goes, then is gone.
    assert_problem(client.delete(f"/api/categories/{garden['id']}/", headers=admin_headers), 409)
    ProductFactory(category_id=shovels["id"])
    assert_problem(client.delete(f"/api/categories/{shovels['id']}/", headers=admin_headers), 409)
    assert_problem(client.delete(f"/api/categories/{hoses['id']}/", headers=user_headers), 403)
    assert_problem(client.delete(f"/api/categories/{hoses['id']}/"), 401)
    assert client.delete(f"/api/categories/{hoses['id']}/", headers=admin_headers).status_code == 204
    assert_problem(client.get(f"/api/categories/{hoses['id']}/"), 404)
    assert_problem(client.delete(f"/api/categories/{hoses['id']}/", headers=admin_headers), 404)
    assert hoses["id"] not in {item["id"] for item in client.get("/api/categories/").get_json()}
    # The blocked ones are still there, untouched.
    assert client.get(f"/api/categories/{shovels['id']}/").status_code == 200
    assert client.get(f"/api/categories/{garden['id']}/").get_json()["children"][0]["id"] == shovels["id"]


def test_duplicate_top_level_name_is_409(client, admin_headers):
    _create(client, admin_headers, name="Top Level Twin")
    assert_problem(
        client.post("/api/categories/", json={"name": "Top Level Twin"}, headers=admin_headers), 409
    )
    other = _create(client, admin_headers, name="Top Level Other")
    assert_problem(
        client.patch(
            f"/api/categories/{other['id']}/", json={"name": "Top Level Twin"}, headers=admin_headers
        ),
        409,
    )


def test_parent_loops_are_refused(client, admin_headers):
    root = CategoryFactory()
    child = CategoryFactory(parent_id=root.id)
    grandchild = CategoryFactory(parent_id=child.id)
    great_grandchild = CategoryFactory(parent_id=grandchild.id)

    for new_parent in (root, child, grandchild, great_grandchild):
        response = client.patch(
            f"/api/categories/{root.id}/", json={"parent_id": new_parent.id}, headers=admin_headers
        )
        assert_problem(response, 409)
    # A middle node cannot go under its own descendant either.
    response = client.patch(
        f"/api/categories/{child.id}/", json={"parent_id": great_grandchild.id}, headers=admin_headers
    )
    assert_problem(response, 409)

    # Nothing moved.
    for category, parent_id in ((root, None), (child, root.id), (grandchild, child.id)):
        assert client.get(f"/api/categories/{category.id}/").get_json()["parent_id"] == parent_id

    # Moving a grandchild up to the root's level is not a loop.
    response = client.patch(
        f"/api/categories/{grandchild.id}/", json={"parent_id": root.id}, headers=admin_headers
    )
    assert response.status_code == 200 and response.get_json()["parent_id"] == root.id


def test_unknown_parent_is_422(client, admin_headers):
    response = client.post(
        "/api/categories/", json={"name": "Orphan", "parent_id": 987654}, headers=admin_headers
    )
    problem = assert_problem(response, 422)
    assert "parent_id" in problem["errors"]

    category = CategoryFactory()
    response = client.patch(
        f"/api/categories/{category.id}/", json={"parent_id": 987654}, headers=admin_headers
    )
    problem = assert_problem(response, 422)
    assert "parent_id" in problem["errors"]
    assert client.get(f"/api/categories/{category.id}/").get_json()["parent_id"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 121}, "name"),
        ({"name": 5}, "name"),
        ({}, "name"),
        ({"name": "Fine", "parent_id": 0}, "parent_id"),
        ({"name": "Fine", "parent_id": "abc"}, "parent_id"),
        ({"name": "Fine", "unknown_field": 1}, "unknown_field"),
    ],
)
def test_category_validation(client, admin_headers, body, field):
    problem = assert_problem(client.post("/api/categories/", json=body, headers=admin_headers), 422)
    assert field in problem["errors"]


def test_unknown_category_is_404(client, admin_headers):
    assert_problem(client.get("/api/categories/987654/"), 404)
    assert_problem(client.get("/api/categories/99999999999999999/"), 404)
    assert_problem(client.patch("/api/categories/987654/", json={"name": "X"}, headers=admin_headers), 404)
    assert_problem(client.delete("/api/categories/987654/", headers=admin_headers), 404)


def test_moving_a_category_refreshes_cached_product_lists(client, admin_headers):
    root = CategoryFactory()
    other_root = CategoryFactory()
    sub = CategoryFactory(parent_id=root.id)
    product = ProductFactory(category_id=sub.id)

    def ids_under(category_id):
        response = client.get(f"/api/products/?category={category_id}")
        assert response.status_code == 200
        return [p["id"] for p in response.get_json()]

    assert ids_under(root.id) == [product.id]  # now cached
    assert ids_under(other_root.id) == []
    moved = client.patch(
        f"/api/categories/{sub.id}/", json={"parent_id": other_root.id}, headers=admin_headers
    )
    assert moved.status_code == 200
    assert ids_under(root.id) == []
    assert ids_under(other_root.id) == [product.id]
