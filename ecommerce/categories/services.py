"""The category tree: reads, and writes that never make a parent loop."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import exists, select, text
from sqlalchemy.orm import selectinload

from ecommerce.categories.models import Category
from ecommerce.core.cache.entries import CacheEntry
from ecommerce.core.cache.purge import invalidate_product_lists
from ecommerce.core.cache.store import product_list_key, product_list_version
from ecommerce.core.db.replicas import CATALOG_SCOPE, read_from_replica
from ecommerce.core.db.session import conflict_on_duplicate
from ecommerce.errors import Conflict, NotFound, ValidationFailed
from ecommerce.extensions import db
from ecommerce.products.models import Product

# Key of the transaction-scoped advisory lock that serialises tree moves on PostgreSQL, so
# two concurrent moves (A under B, B under A) cannot both pass the loop check.
TREE_LOCK_KEY = 7_231_001
NAME_TAKEN = "A category with that name already exists under that parent."


def list_categories() -> list[Category]:
    read_from_replica(CATALOG_SCOPE)
    return list(db.session.scalars(select(Category).order_by(Category.id)))


def category_list() -> CacheEntry:
    """Every category, cached with the product lists' generation.

    Every category write starts a new generation (``invalidate_product_lists``), so the cached
    tree is never older than the last write, on any instance (it is also in the per-process
    layer). Under load the uncached tree was the slowest catalog read: the whole tree
    serialised on every request."""
    key = product_list_key(product_list_version(), {"categories": "all"})
    return CacheEntry(
        key, list_categories, current_app.config["PRODUCT_LIST_CACHE_TIMEOUT"], entity="category_list"
    )


def get_category(category_id: int) -> Category:
    read_from_replica(CATALOG_SCOPE)  # a GET's read only: writes stay on the primary
    category = db.session.scalar(
        select(Category).options(selectinload(Category.children)).where(Category.id == category_id)
    )
    if category is None:
        raise NotFound("No such category.")
    return category


def descendant_ids(category_id: int):
    """A SELECT of the category's id and all its descendants' (a recursive CTE)."""
    tree = select(Category.id).where(Category.id == category_id).cte("tree", recursive=True)
    tree = tree.union_all(select(Category.id).where(Category.parent_id == tree.c.id))
    return select(tree.c.id)


def _lock_tree() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TREE_LOCK_KEY})


def _check_parent(category_id: int | None, parent_id: int | None) -> None:
    if parent_id is None:
        return
    if db.session.get(Category, parent_id) is None:
        raise ValidationFailed({"parent_id": ["No such category."]})
    if category_id is None:
        return
    # Walk up from the new parent; meeting the category itself means a loop.
    ancestor: int | None = parent_id
    seen: set[int] = set()
    while ancestor is not None and ancestor not in seen:
        if ancestor == category_id:
            raise Conflict("A category cannot be moved under itself or one of its descendants.")
        seen.add(ancestor)
        ancestor = db.session.scalar(select(Category.parent_id).where(Category.id == ancestor))


def create_category(data: dict[str, Any]) -> Category:
    _check_parent(None, data.get("parent_id"))
    category = Category(**data)
    db.session.add(category)
    invalidate_product_lists(db.session)  # the cached tree
    with conflict_on_duplicate(NAME_TAKEN):
        db.session.commit()
    return category


def update_category(category_id: int, changes: dict[str, Any]) -> Category:
    if "parent_id" in changes:
        _lock_tree()
    category = get_category(category_id)
    if "parent_id" in changes and changes["parent_id"] != category.parent_id:
        _check_parent(category.id, changes["parent_id"])
    # Product lists filter by the tree, and the tree itself is cached: any change purges both.
    invalidate_product_lists(db.session)
    for field, value in changes.items():
        setattr(category, field, value)
    with conflict_on_duplicate(NAME_TAKEN):
        db.session.commit()
    return category


def delete_category(category_id: int) -> None:
    _lock_tree()
    category = get_category(category_id)
    if category.children:
        raise Conflict("The category has sub-categories; move or delete them first.")
    if db.session.scalar(select(exists().where(Product.category_id == category_id))):
        raise Conflict("The category still holds products; move or delete them first.")
    db.session.delete(category)
    invalidate_product_lists(db.session)
    db.session.commit()
