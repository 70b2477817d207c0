"""Every model of the application, imported in one place: what the migrations compare the
database with (migrations/env.py), and what the tests empty between tests."""

from ecommerce.auth.models import AuthSession
from ecommerce.carts.models import CartItem, ShoppingCart
from ecommerce.categories.models import Category
from ecommerce.core.idempotency import IdempotencyKey
from ecommerce.orders.models import Order, OrderEmail, OrderEvent, OrderItem
from ecommerce.payments.models import Payment
from ecommerce.products.models import Product, ProductImage
from ecommerce.reviews.models import Review
from ecommerce.shipping.models import ShippingLeg, ShippingZone
from ecommerce.users.models import User
from ecommerce.wishlists.models import Wishlist, WishlistItem

__all__ = [
    "AuthSession",
    "CartItem",
    "Category",
    "IdempotencyKey",
    "Order",
    "OrderEmail",
    "OrderEvent",
    "OrderItem",
    "Payment",
    "Product",
    "ProductImage",
    "Review",
    "ShippingLeg",
    "ShippingZone",
    "ShoppingCart",
    "User",
    "Wishlist",
    "WishlistItem",
]
