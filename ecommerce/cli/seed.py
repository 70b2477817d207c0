"""``flask seed``: a demo catalog (a category tree, products with pictures, customers and their
reviews, a carrier network to ship with) and, with ``--load-*``, the load-test data of
load_data.py.

Every step tops up to the counts given, so running it again adds nothing twice. Products and
reviews are written with multi-row INSERTs in chunks; when they change, the catalog cache on
Redis is cleared (a server without Redis keeps its own until its entries expire).
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import click
from click.core import ParameterSource
from flask import current_app
from sqlalchemy import func, insert, select, text

from ecommerce.auth.services import hash_password
from ecommerce.categories.models import Category
from ecommerce.cli.demo_network import seed_network
from ecommerce.cli.demo_pictures import seed_pictures
from ecommerce.cli.load_data import ensure_load_customers, ensure_load_orders, write_load_csvs
from ecommerce.core.cache.store import clear_all
from ecommerce.core.models import utcnow
from ecommerce.extensions import db
from ecommerce.products.models import Product
from ecommerce.reviews.models import Review
from ecommerce.users.models import User

ROOT_CATEGORIES = ["Electronics", "Home & Kitchen", "Books", "Sports & Outdoors", "Fashion", "Toys & Games"]
SUB_WORDS = ["Essentials", "Premium", "Accessories", "Classics", "Pro", "Everyday", "Outlet", "Kids"]
ADJECTIVES = [
    "Compact",
    "Deluxe",
    "Eco",
    "Smart",
    "Classic",
    "Ultra",
    "Portable",
    "Rugged",
    "Silent",
    "Vintage",
]
NOUNS = [
    "Lamp",
    "Kettle",
    "Backpack",
    "Speaker",
    "Notebook",
    "Jacket",
    "Drone",
    "Blender",
    "Tent",
    "Watch",
    "Keyboard",
    "Chair",
    "Puzzle",
    "Camera",
    "Bottle",
    "Headphones",
    "Novel",
    "Sneakers",
    "Router",
    "Mug",
]
CHUNK = 5000


def _ensure_categories(roots: int, children: int, depth: int) -> list[int]:
    """Create the tree (idempotently, by parent and name); return the ids of its leaves."""
    existing = {(c.parent_id, c.name): c.id for c in db.session.scalars(select(Category))}
    level: list[tuple[int | None, str]] = [(None, name) for name in ROOT_CATEGORIES[:roots]]
    leaves: list[int] = []
    for current_depth in range(1, depth + 1):
        next_level: list[tuple[int | None, str]] = []
        for parent_id, name in level:
            key = (parent_id, name)
            if key not in existing:
                category = Category(name=name, parent_id=parent_id, description=f"{name} and more")
                db.session.add(category)
                db.session.flush()
                existing[key] = category.id
            category_id = existing[key]
            if current_depth == depth:
                leaves.append(category_id)
            else:
                next_level.extend((category_id, f"{name} {word}") for word in SUB_WORDS[:children])
        level = next_level
    db.session.commit()
    return leaves


def _product_row(number: int, leaves: list[int], now) -> dict:
    rng = random.Random(number)
    adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
    return {
        "name": f"{adjective} {noun} {number:06d}",
        "description": f"{'An' if adjective[0] in 'AEIOU' else 'A'} {adjective.lower()} "
        f"{noun.lower()} for every day. Model {number}, "
        f"{rng.choice(['water resistant', 'lightweight', 'energy saving', 'hand made', 'wireless'])}.",
        "price": Decimal(rng.randint(199, 99999)) / 100,
        "stock_quantity": rng.choice([0] + [rng.randint(1, 500)] * 9),
        "category_id": leaves[number % len(leaves)],
        "created_at": now - timedelta(minutes=rng.randint(0, 365 * 24 * 60)),
        "updated_at": now,
    }


def _seed_products(target: int, leaves: list[int]) -> int:
    have = db.session.scalar(select(func.count()).select_from(Product))
    missing = max(0, target - have)
    if not missing:
        return 0
    now = utcnow()
    with click.progressbar(length=missing, label=f"Products ({have} -> {target})") as bar:
        for start in range(have + 1, target + 1, CHUNK):
            stop = min(start + CHUNK, target + 1)
            db.session.execute(insert(Product), [_product_row(n, leaves, now) for n in range(start, stop)])
            bar.update(stop - start)
    db.session.commit()
    return missing


def _seed_customers(count: int, password: str) -> list[int]:
    ids = []
    password_hash = None
    for number in range(1, count + 1):
        username = f"customer{number}"
        user = db.session.scalar(select(User).where(User.username == username))
        if user is None:
            password_hash = password_hash or hash_password(password)
            user = User(
                username=username,
                email=f"{username}@example.com",
                password_hash=password_hash,
                first_name="Demo",
                last_name=f"Customer {number}",
            )
            db.session.add(user)
            db.session.flush()
        ids.append(user.id)
    db.session.commit()
    return ids


def _seed_reviews(customer_ids: list[int], products: int) -> int:
    """A few reviews per customer on the first products, with exact aggregates."""
    if not customer_ids or db.session.scalar(select(func.count()).select_from(Review)):
        return 0
    product_ids = list(db.session.scalars(select(Product.id).order_by(Product.id).limit(min(products, 200))))
    rows = []
    for user_id in customer_ids:
        rng = random.Random(user_id)
        for product_id in rng.sample(product_ids, min(len(product_ids), 20)):
            rows.append(
                {
                    "user_id": user_id,
                    "product_id": product_id,
                    "rating": rng.randint(1, 5),
                    "comment": rng.choice(["Great value.", "Does the job.", "Not for me.", "Love it!", ""]),
                }
            )
    if rows:
        db.session.execute(insert(Review), rows)
        db.session.execute(
            text(
                "UPDATE products SET "
                "rating_sum = (SELECT COALESCE(SUM(rating), 0) FROM reviews "
                "WHERE reviews.product_id = products.id), "
                "rating_count = (SELECT COUNT(*) FROM reviews WHERE reviews.product_id = products.id) "
                "WHERE id IN (SELECT DISTINCT product_id FROM reviews)"
            )
        )
        db.session.execute(
            text(
                "UPDATE products SET rating_avg = ROUND(rating_sum * 1.0 / rating_count, 2) "
                "WHERE rating_count > 0"
            )
        )
    db.session.commit()
    return len(rows)


@click.command("seed")
@click.option(
    "--products", default=1000, show_default=True, help="Bring the catalog up to this many products."
)
@click.option(
    "--pictures",
    default=60,
    show_default=True,
    type=click.IntRange(min=0),
    help="Bring the products with pictures up to this many (the first ones; drawn, not downloaded).",
)
@click.option("--customers", default=5, show_default=True, help="Demo customers customer1..N.")
@click.option("--customer-password", default="password123", show_default=True)
@click.option("--roots", default=6, show_default=True, help="Top-level categories.")
@click.option("--children", default=4, show_default=True, help="Sub-categories per category.")
@click.option("--depth", default=3, show_default=True, help="Levels in the category tree.")
@click.option(
    "--load-customers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Load-test customers load_customer_00001..N (for the JMeter plans).",
)
@click.option(
    "--load-orders",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Past orders per load-test customer (stock untouched).",
)
@click.option(
    "--load-password",
    default="loadtest-password",
    show_default=True,
    help="The password every load-test customer logs in with.",
)
@click.option(
    "--csv-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write users.csv, products.csv and categories.csv for the load plans here.",
)
def seed_command(
    products,
    pictures,
    customers,
    customer_password,
    roots,
    children,
    depth,
    load_customers,
    load_orders,
    load_password,
    csv_dir,
):
    """Seed a demo catalog (idempotent: tops up to the counts given)."""
    started = time.perf_counter()
    if not 1 <= roots <= len(ROOT_CATEGORIES):
        raise click.BadParameter(f"between 1 and {len(ROOT_CATEGORIES)}", param_hint="--roots")
    if not 1 <= children <= len(SUB_WORDS):
        raise click.BadParameter(f"between 1 and {len(SUB_WORDS)}", param_hint="--children")
    min_length = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(load_password) < min_length:
        raise click.BadParameter(f"at least {min_length} characters", param_hint="--load-password")
    leaves = _ensure_categories(roots, children, depth)
    added = _seed_products(products, leaves)
    customer_ids = _seed_customers(customers, customer_password)
    reviews = _seed_reviews(customer_ids, products)
    if added or reviews:
        clear_all()
    new_pictures = seed_pictures(pictures)  # purges what it changes, as an upload does
    zones, legs = seed_network()
    total_categories = db.session.scalar(select(func.count()).select_from(Category))
    click.echo(
        f"Seeded: {total_categories} categories, {added} new products, {new_pictures} new pictures, "
        f"{len(customer_ids)} customers, {reviews} reviews, {zones} shipping zones and {legs} legs "
        f"in {time.perf_counter() - started:.1f}s"
    )
    # An explicit --load-password alone still moves every load customer onto it.
    password_given = (
        click.get_current_context().get_parameter_source("load_password") != ParameterSource.DEFAULT
    )
    if load_customers or load_orders or csv_dir is not None or password_given:
        _seed_load_data(load_customers, load_orders, load_password, csv_dir)


def _seed_load_data(customers: int, orders: int, password: str, csv_dir: Path | None) -> None:
    """The JMeter plans' data: load customers, their order history, the CSV files they read."""
    started = time.perf_counter()
    load = ensure_load_customers(customers, password)
    click.echo(f"Load customers: {len(load.ids)} ({load.created} new), all with the --load-password")
    if orders:
        try:
            added = ensure_load_orders(load.ids, orders)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
        click.echo(
            f"Load orders: {added} new, {orders} per load customer in {time.perf_counter() - started:.1f}s"
        )
    if csv_dir is not None:
        for path, rows in write_load_csvs(csv_dir, load.usernames, password):
            click.echo(f"Wrote {path} ({rows} rows)")
