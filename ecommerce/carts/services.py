"""The current user's cart: made on first use, one line per product."""

from __future__ import annotations

from sqlalchemy import delete, select

from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.carts.schemas import MAX_LINE_QUANTITY
from ecommerce.core.models import dialect_insert, owned_row_id, utcnow
from ecommerce.errors import NotFound, ValidationFailed
from ecommerce.extensions import db
from ecommerce.products.services import get_product
from ecommerce.users.models import User


def cart_id_of(user: User) -> int:
    """The user's cart id, creating the cart on first use."""
    return owned_row_id(ShoppingCart, user.id)


def get_cart(user: User) -> ShoppingCart:
    """The cart with its lines and their products (three queries, whatever its size)."""
    return db.session.get(ShoppingCart, cart_id_of(user))


def _own_item(user: User, item_id: int) -> CartItem:
    item = db.session.scalar(
        select(CartItem)
        .join(ShoppingCart, ShoppingCart.id == CartItem.cart_id)
        .where(CartItem.id == item_id, ShoppingCart.user_id == user.id)
        # The line's row only: a racing delete or checkout commits first, then this finds no row
        # (404) instead of updating or deleting a row that is gone.
        .with_for_update(of=CartItem)
    )
    if item is None:
        raise NotFound("No such item in your cart.")
    return item


def add_item(user: User, product_id: int, quantity: int) -> tuple[CartItem, bool]:
    """Add a product; if it is already in the cart, add to its quantity (one atomic upsert).

    Returns the line and whether it is new.
    """
    get_product(product_id)
    cart_id = cart_id_of(user)
    session = db.session
    existed = session.scalar(
        select(CartItem.id).where(CartItem.cart_id == cart_id, CartItem.product_id == product_id)
    )
    statement = dialect_insert(CartItem, session.get_bind().dialect.name).values(
        cart_id=cart_id,
        product_id=product_id,
        quantity=quantity,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    statement = statement.on_conflict_do_update(
        index_elements=["cart_id", "product_id"],
        set_={"quantity": CartItem.quantity + statement.excluded.quantity, "updated_at": utcnow()},
    ).returning(CartItem.id, CartItem.quantity)
    item_id, total_quantity = session.execute(statement).one()
    if total_quantity > MAX_LINE_QUANTITY:
        session.rollback()
        raise ValidationFailed({"quantity": [f"A cart line holds at most {MAX_LINE_QUANTITY} units."]})
    item = session.get(CartItem, item_id)  # loaded before the commit: the answer is what was written
    session.commit()
    return item, existed is None


def set_quantity(user: User, item_id: int, quantity: int) -> CartItem:
    item = _own_item(user, item_id)
    item.quantity = quantity
    db.session.commit()
    return item


def remove_item(user: User, item_id: int) -> None:
    item = _own_item(user, item_id)
    db.session.delete(item)
    db.session.commit()


def empty_cart(user: User) -> None:
    db.session.execute(delete(CartItem).where(CartItem.cart_id == cart_id_of(user)))
    db.session.commit()
