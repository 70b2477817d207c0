"""Products: the lifecycle walk, filters, sorts, pagination, ETag and validation."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.factories import CategoryFactory, ProductFactory
from tests.helpers import assert_pagination


def test_product_lifecycle(client, admin_headers, user_headers):
    category = CategoryFactory()
    body = {
        "name": "Desk Lamp",
        "description": "Warm light",
        "price": "24.50",
        "stock_quantity": 7,
        "category_id": category.id,
    }

    assert client.post("/api/products/", json=body).status_code == 401
    assert client.post("/api/products/", json=body, headers=user_headers).status_code == 403

    created = client.post("/api/products/", json=body, headers=admin_headers)
    assert created.status_code == 201
    product = created.get_json()
    assert product["price"] == "24.50"
    assert product["rating_avg"] == 0 and product["rating_count"] == 0
    assert product["created_at"].endswith("Z")
    assert set(product) == {
        "id",
        "name",
        "description",
        "price",
        "stock_quantity",
        "category_id",
        "rating_avg",
        "rating_count",
        "images",
        "created_at",
        "updated_at",
    }
    assert product["images"] == []

    read = client.get(f"/api/products/{product['id']}/")
    assert read.status_code == 200 and read.get_json() == product
    etag = read.headers["ETag"]
    assert client.get(f"/api/products/{product['id']}/", headers={"If-None-Match": etag}).status_code == 304
    # Without the final slash: same answer, no redirect.
    same = client.get(f"/api/products/{product['id']}")
    assert same.status_code == 200 and same.get_json() == product

    patched = client.patch(f"/api/products/{product['id']}/", json={"price": "20.00"}, headers=admin_headers)
    assert patched.status_code == 200 and patched.get_json()["price"] == "20.00"
    # The cached copy was purged: the next read shows the change and a new ETag.
    reread = client.get(f"/api/products/{product['id']}/", headers={"If-None-Match": etag})
    assert reread.status_code == 200 and reread.get_json()["price"] == "20.00"
    assert reread.headers["ETag"] != etag

    assert client.delete(f"/api/products/{product['id']}/", headers=user_headers).status_code == 403
    assert client.delete(f"/api/products/{product['id']}/", headers=admin_headers).status_code == 204
    gone = client.get(f"/api/products/{product['id']}/")
    assert gone.status_code == 404
    assert gone.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"price": "-1.00"}, "price"),
        ({"price": "1.999"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": 1e20}, "price"),
        ({"stock_quantity": -1}, "stock_quantity"),
        ({"stock_quantity": "5"}, "stock_quantity"),
        ({"name": ""}, "name"),
        ({"category_id": 999999}, "category_id"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_product_validation(client, admin_headers, body, field):
    category = CategoryFactory()
    payload = {"name": "Thing", "price": "1.00", "category_id": category.id, **body}
    response = client.post("/api/products/", json=payload, headers=admin_headers)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert field in problem["errors"]


def test_unknown_and_out_of_range_ids_are_404(client):
    assert client.get("/api/products/987654/").status_code == 404
    assert client.get("/api/products/99999999999999999/").status_code == 404


def _page(client, query):
    response = client.get(f"/api/products/?{query}")
    assert response.status_code == 200, response.get_json()
    return response


def test_category_filter_includes_descendants(client):
    root = CategoryFactory()
    child = CategoryFactory(parent_id=root.id)
    grandchild = CategoryFactory(parent_id=child.id)
    other = CategoryFactory()
    ids = {ProductFactory(category_id=c.id).id for c in (root, child, grandchild)}
    ProductFactory(category_id=other.id)

    found = {p["id"] for p in _page(client, f"category={root.id}&page_size=100").get_json()}
    assert found == ids
    found = {p["id"] for p in _page(client, f"category={child.id}").get_json()}
    assert len(found) == 2


def test_price_stock_filters_and_sorts(client):
    category = CategoryFactory()
    cheap = ProductFactory(category_id=category.id, price=Decimal("5.00"), stock_quantity=0, name="Bravo")
    mid = ProductFactory(category_id=category.id, price=Decimal("15.00"), stock_quantity=3, name="Alpha")
    dear = ProductFactory(category_id=category.id, price=Decimal("25.00"), stock_quantity=1, name="Charlie")
    base = f"category={category.id}"

    def ids(query):
        return [p["id"] for p in _page(client, f"{base}&{query}").get_json()]

    assert ids("min_price=10&max_price=30&sort=price") == [mid.id, dear.id]
    assert ids("in_stock=true&sort=price") == [mid.id, dear.id]
    assert ids("in_stock=false") == [cheap.id]
    assert ids("sort=-price") == [dear.id, mid.id, cheap.id]
    assert ids("sort=name") == [mid.id, cheap.id, dear.id]
    assert ids("sort=-name") == [dear.id, cheap.id, mid.id]
    assert ids("sort=created_at") == [cheap.id, mid.id, dear.id]
    assert ids("sort=-created_at") == [dear.id, mid.id, cheap.id]


def test_full_text_search(client):
    category = CategoryFactory()
    kettle = ProductFactory(category_id=category.id, name="Copper Kettle", description="Boils water fast")
    ProductFactory(category_id=category.id, name="Garden Hose", description="Waters plants")
    found = [p["id"] for p in _page(client, f"category={category.id}&q=kettles").get_json()]
    assert found == [kettle.id]  # stemming: "kettles" finds "Kettle"
    found = [p["id"] for p in _page(client, f"category={category.id}&q=boil").get_json()]
    assert found == [kettle.id]


def test_pagination_headers(client):
    category = CategoryFactory()
    for _ in range(5):
        ProductFactory(category_id=category.id)
    response = _page(client, f"category={category.id}&page=2&page_size=2")
    assert_pagination(response, total=5, page=2, page_size=2)
    assert len(response.get_json()) == 2


@pytest.mark.parametrize(
    "query",
    [
        "page_size=101",
        "page=0",
        "sort=random",
        "min_price=10&max_price=5",
        "min_price=abc",
        "category=0",
        "in_stock=maybe",
        "page=abc",
    ],
)
def test_bad_list_queries_are_422(client, query):
    response = client.get(f"/api/products/?{query}")
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"


def test_unfiltered_total_counts_the_whole_catalog(client):
    category = CategoryFactory()
    for _ in range(3):
        ProductFactory(category_id=category.id)
    response = _page(client, "page_size=2")
    # The test's transaction holds exactly these three products (everything else rolls back).
    assert_pagination(response, total=3, page_size=2)
    assert len(response.get_json()) == 2


def test_tests_run_in_a_rolled_back_transaction(client):
    # Guard for the fixture itself: a product committed by an earlier test must not be here.
    assert_pagination(_page(client, "page_size=1"), total=0)


def test_a_cache_miss_reads_exactly_what_the_schema_shows(client, app):
    """A product's detail is filled from a plain row, not an ORM object: the JSON must be what
    ProductSchema makes of the product itself, field for field, for every kind of value."""
    from ecommerce.extensions import db
    from ecommerce.products.models import Product
    from ecommerce.products.schemas import ProductSchema

    product = ProductFactory(
        name="Ünïcode “quotes” \\ and </script>",
        description="",
        price=Decimal("1234567.05"),
        stock_quantity=0,
        rating_sum=14,
        rating_count=3,
        rating_avg=Decimal("4.67"),
    )
    expected = json.loads(json.dumps(ProductSchema().dump(db.session.get(Product, product.id))))
    response = client.get(f"/api/products/{product.id}/")
    assert response.status_code == 200
    assert response.get_json() == expected
    assert list(response.get_json()) == list(expected)  # the schema's field order, too
    assert client.get(f"/api/products/{product.id + 10_000}/").status_code == 404
