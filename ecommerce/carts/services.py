"""The current user's cart: made on first use, one line per product."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import cache
from types import SimpleNamespace

from sqlalchemy import Executable, Integer, bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ecommerce.carts.models import MAX_LINE_QUANTITY, CartItem, ShoppingCart
from ecommerce.core.db.autocommit import alone
from ecommerce.core.db.session import locked, note_writes
from ecommerce.core.models import UTCDateTime, dialect_insert, owned_row_id, utcnow
from ecommerce.errors import NotFound, ValidationFailed
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.products.services import get_product
from ecommerce.users.models import User

_LINE_BOUND = f"ck_cart_items_quantity_at_most_{MAX_LINE_QUANTITY}"


def cart_id_of(user: User) -> int:
    """The user's cart id, creating the cart on first use."""
    return owned_row_id(ShoppingCart, user.id)


def get_cart(user: User) -> ShoppingCart:
    """The cart with its lines and their products (three queries, whatever its size)."""
    return db.session.get(ShoppingCart, cart_id_of(user))


def _own_item(user: User, item_id: int) -> CartItem:
    # The line's row only: a racing delete or checkout commits first, then this finds no row
    # (404) instead of updating or deleting a row that is gone.
    item = db.session.scalar(
        locked(
            select(CartItem)
            .join(ShoppingCart, ShoppingCart.id == CartItem.cart_id)
            .where(CartItem.id == item_id, ShoppingCart.user_id == user.id),
            of=CartItem,
        )
    )
    if item is None:
        raise NotFound("No such item in your cart.")
    return item


def add_item(user: User, product_id: int, quantity: int) -> tuple[CartItem | SimpleNamespace, bool]:
    """Add a product; if it is already in the cart, add to its quantity (one atomic upsert).

    Returns the line (as the response shows it: id, product, quantity, price) and whether it is
    new.
    """
    session = db.session
    added = _add_to_cart(session, user.id, product_id, quantity)
    if added is None:
        # No cart yet (first use), or no such product.
        get_product(product_id)
        cart_id_of(user)
        added = _add_to_cart(session, user.id, product_id, quantity)
        if added is None:  # the product went away meanwhile
            raise NotFound("No such product.")
    item_id, total_quantity, price = added
    if price is None:
        item = session.get(CartItem, item_id)  # loaded before the commit: the answer is what was written
    else:
        item = SimpleNamespace(
            id=item_id,
            product_id=product_id,
            quantity=total_quantity,
            product=SimpleNamespace(price=price),
            line_total=price * total_quantity,
        )
    session.commit()
    # A line that existed held at least one unit (CHECK quantity > 0), so only a new line
    # holds exactly the quantity just added.
    return item, total_quantity == quantity


def _add_to_cart(
    session: Session, user_id: int, product_id: int, quantity: int
) -> tuple[int, int, Decimal | None] | None:
    """Upsert the line into the user's cart in one statement: (line id, its new quantity, the
    product's price or None), or None when the user has no cart yet or the product does not
    exist (nothing written).

    On PostgreSQL the statement also returns the product's price (the upsert in a CTE, joined
    with its product), so the answer needs no second query; it is run on the session's
    connection as Core SQL, without the ORM's DML machinery and identity map. (py-spy during the
    checkout benchmark: the ORM upsert and the line's reload were 26% and 8% of a worker's
    samples; docs/performance_tuning.md, "Add to cart in one statement".) Elsewhere (SQLite)
    the price comes from loading the line."""
    dialect = session.get_bind().dialect.name
    values = {"user_id": user_id, "product_id": product_id, "quantity": quantity, "now": utcnow()}
    with _line_bound():
        if dialect == "postgresql":
            # A whole transaction by itself, in autocommit when the request has none open: one
            # round trip instead of BEGIN, the statement and COMMIT.
            with alone(session, writes=True) as connection:
                row = connection.execute(_upsert_statement(dialect), values).one_or_none()
            if row is None:
                return None
            note_writes(session, CartItem.__tablename__)  # a Core statement: the session's events miss it
            return row.id, row.quantity, row.price
        row = session.execute(_upsert_statement(dialect), values).one_or_none()
    return None if row is None else (row.id, row.quantity, None)


@contextmanager
def _line_bound() -> Iterator[None]:
    """A line that would exceed MAX_LINE_QUANTITY is refused (422) by the database's CHECK
    (migration 0010), the statement and its write undone."""
    try:
        yield
    except IntegrityError as error:
        diagnostics = getattr(error.orig, "diag", None)  # psycopg2's; SQLite names it in the message
        if _LINE_BOUND not in (getattr(diagnostics, "constraint_name", None) or str(error.orig)):
            raise
        detail = f"A cart line holds at most {MAX_LINE_QUANTITY} units."
        raise ValidationFailed({"quantity": [detail]}) from None


@cache
def _upsert_statement(dialect: str) -> Executable:
    """The add-to-cart's statement for ``dialect``, built once with bound parameters (user_id,
    product_id, quantity, now): building it per request, the CTE's column collection included,
    was 10% of a worker's samples in the checkout benchmark."""
    lines = CartItem.__table__
    now = bindparam("now", type_=UTCDateTime())
    source = (
        select(ShoppingCart.id, Product.id, bindparam("quantity", type_=Integer), now, now)
        .select_from(ShoppingCart)
        .join(Product, Product.id == bindparam("product_id", type_=Integer))
        .where(ShoppingCart.user_id == bindparam("user_id", type_=Integer))
        # A share lock on the cart row: a line joins the cart before or after a checkout of it,
        # never while a checkout (whose lock on the cart excludes this one) is placing it. So a
        # batch of checkouts has locked every product of its carts before its first member runs
        # (orders/batching.py, migration 0009). SQLite has no row locks and ignores it.
        .with_for_update(read=True, of=ShoppingCart)
    )
    statement = dialect_insert(lines, dialect).from_select(
        ["cart_id", "product_id", "quantity", "created_at", "updated_at"], source
    )
    statement = statement.on_conflict_do_update(
        index_elements=["cart_id", "product_id"],
        set_={"quantity": lines.c.quantity + statement.excluded.quantity, "updated_at": now},
    ).returning(lines.c.id, lines.c.quantity, lines.c.product_id)
    if dialect != "postgresql":
        return statement
    added = statement.cte("added")
    products = Product.__table__
    return select(added.c.id, added.c.quantity, products.c.price).join(
        products, products.c.id == added.c.product_id
    )


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
