"""factory_boy factories; they commit through the app's session (a savepoint in API tests)."""

from __future__ import annotations

from decimal import Decimal

import factory
from flask import current_app

from ecommerce.auth.services import hash_password
from ecommerce.categories.models import Category
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.reviews.models import Review
from ecommerce.users.models import Role, User

PASSWORD = "password123"


def _password_hash() -> str:
    cached = current_app.extensions.setdefault("test_password_hash", {})
    if "hash" not in cached:
        cached["hash"] = hash_password(PASSWORD)
    return cached["hash"]


class BaseFactory(factory.alchemy.SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class UserFactory(BaseFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password_hash = factory.LazyFunction(_password_hash)
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User {n}")
    role = Role.CUSTOMER


class AdminFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    role = Role.ADMIN


class CategoryFactory(BaseFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    description = "A test category"
    parent_id = None


class ProductFactory(BaseFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    description = "A product for tests"
    price = Decimal("19.99")
    stock_quantity = 10
    category_id = factory.LazyFunction(lambda: CategoryFactory().id)


class ReviewFactory(BaseFactory):
    class Meta:
        model = Review

    product_id = factory.LazyFunction(lambda: ProductFactory().id)
    user_id = factory.LazyFunction(lambda: UserFactory().id)
    rating = 4
    comment = "Fine"
