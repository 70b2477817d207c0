"""The current user's wishlist: made on first use; adding a product twice changes nothing."""

from __future__ import annotations

from sqlalchemy import select

from ecommerce.core.models import dialect_insert, owned_row_id, utcnow
from ecommerce.errors import NotFound
from ecommerce.extensions import db
from ecommerce.products.services import get_product
from ecommerce.users.models import User
from ecommerce.wishlists.models import Wishlist, WishlistItem


def wishlist_id_of(user: User) -> int:
    """The user's wishlist id, creating the wishlist on first use."""
    return owned_row_id(Wishlist, user.id)


def get_wishlist(user: User) -> Wishlist:
    return db.session.get(Wishlist, wishlist_id_of(user))


def add_item(user: User, product_id: int) -> tuple[WishlistItem, bool]:
    """Add a product; returns the line and whether it is new (a second add returns the first)."""
    get_product(product_id)
    wishlist_id = wishlist_id_of(user)
    session = db.session
    inserted = session.execute(
        dialect_insert(WishlistItem, session.get_bind().dialect.name)
        .values(wishlist_id=wishlist_id, product_id=product_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["wishlist_id", "product_id"])
        .returning(WishlistItem.id)
    ).scalar()
    session.commit()
    item = session.scalar(
        select(WishlistItem).where(
            WishlistItem.wishlist_id == wishlist_id, WishlistItem.product_id == product_id
        )
    )
    return item, inserted is not None


def remove_item(user: User, item_id: int) -> None:
    item = db.session.scalar(
        select(WishlistItem)
        .join(Wishlist, Wishlist.id == WishlistItem.wishlist_id)
        .where(WishlistItem.id == item_id, Wishlist.user_id == user.id)
    )
    if item is None:
        raise NotFound("No such item in your wishlist.")
    db.session.delete(item)
    db.session.commit()
