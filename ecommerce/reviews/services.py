"""Reviews, and the product's rating aggregate kept exact under concurrency.

The aggregate moves with one atomic UPDATE on the product row per review change
(``rating_sum = rating_sum + :delta``): concurrent reviewers queue on that row lock and each
increment applies to the latest committed values, so no review is ever lost from the count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal_column, select, update

from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db.replicas import CATALOG_SCOPE, read_from_replica
from ecommerce.core.db.session import conflict_on_duplicate, locked
from ecommerce.errors import Forbidden, NotFound
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.products.services import get_product
from ecommerce.reviews.models import Review
from ecommerce.users.models import Role, User


def _move_aggregate(product_id: int, sum_delta: int, count_delta: int) -> None:
    new_sum = Product.rating_sum + sum_delta
    new_count = Product.rating_count + count_delta
    db.session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(
            rating_sum=new_sum,
            rating_count=new_count,
            rating_avg=case(
                (new_count <= 0, 0),
                else_=func.round(new_sum * literal_column("1.0") / new_count, 2),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    invalidate_product(db.session, product_id)


def list_reviews(product_id: int, page: int, page_size: int) -> tuple[list[Review], int]:
    read_from_replica(CATALOG_SCOPE)
    get_product(product_id)
    total = db.session.scalar(select(func.count()).where(Review.product_id == product_id))
    reviews = db.session.scalars(
        select(Review)
        .where(Review.product_id == product_id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return list(reviews), total


def get_review(review_id: int, *, for_update: bool = False) -> Review:
    statement = select(Review).where(Review.id == review_id)
    if for_update:
        statement = locked(statement, of=Review)
    review = db.session.scalar(statement)
    if review is None:
        raise NotFound("No such review.")
    return review


def _check_author(review: Review, actor: User) -> None:
    if review.user_id != actor.id and actor.role != Role.ADMIN:
        raise Forbidden("Only the author or an admin may change this review.")


def create_review(actor: User, product_id: int, data: dict[str, Any]) -> Review:
    get_product(product_id)
    review = Review(product_id=product_id, user_id=actor.id, **data)
    db.session.add(review)
    with conflict_on_duplicate("You have already reviewed this product."):
        db.session.flush()
    _move_aggregate(product_id, data["rating"], 1)
    db.session.commit()
    return review


def update_review(actor: User, review_id: int, changes: dict[str, Any]) -> Review:
    review = get_review(review_id, for_update=True)
    _check_author(review, actor)
    if "rating" in changes and changes["rating"] != review.rating:
        _move_aggregate(review.product_id, changes["rating"] - review.rating, 0)
    for field, value in changes.items():
        setattr(review, field, value)
    db.session.commit()
    return review


def delete_review(actor: User, review_id: int) -> None:
    review = get_review(review_id, for_update=True)
    _check_author(review, actor)
    db.session.delete(review)
    _move_aggregate(review.product_id, -review.rating, -1)
    db.session.commit()
