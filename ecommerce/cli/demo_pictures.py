"""The demo catalog's pictures, drawn here (no download): a colour field per category, the
product's kind written large, and a few shapes that differ per product. Each goes through the
same service as an admin's upload (decoded, re-encoded, stored under its hash)."""

from __future__ import annotations

import io
import random

import click
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import func, select

from ecommerce.extensions import db
from ecommerce.products.images import add_product_image
from ecommerce.products.models import Product, ProductImage

SIZE = (960, 720)
# Soft pairs of colours (top, bottom of the gradient), one per category by its id.
PALETTES = [
    ((250, 222, 196), (214, 118, 84)),
    ((206, 229, 242), (72, 129, 181)),
    ((223, 240, 216), (94, 150, 96)),
    ((240, 226, 246), (140, 96, 170)),
    ((255, 241, 199), (210, 160, 40)),
    ((226, 232, 240), (88, 102, 128)),
]
GALLERY_EVERY = 10  # every tenth pictured product gets three pictures (a gallery)


def draw_picture(product: Product, variant: int) -> bytes:
    """A JPEG of the product: deterministic for the product and variant."""
    rng = random.Random(product.id * 31 + variant)
    top, bottom = PALETTES[(product.category_id + variant) % len(PALETTES)]
    width, height = SIZE
    picture = Image.new("RGB", SIZE)
    pen = ImageDraw.Draw(picture)
    for y in range(height):
        share = y / (height - 1)
        pen.line(
            [(0, y), (width, y)],
            fill=tuple(round(a + (b - a) * share) for a, b in zip(top, bottom, strict=True)),
        )
    for _ in range(6):
        x, y, r = rng.randint(0, width), rng.randint(0, height), rng.randint(40, 180)
        tint = tuple(min(255, c + rng.randint(10, 50)) for c in top)
        pen.ellipse([x - r, y - r, x + r, y + r], outline=tint, width=rng.randint(4, 14))
    kind = product.name.split()[1] if len(product.name.split()) > 1 else product.name
    font = ImageFont.load_default(size=120)
    box = pen.textbbox((0, 0), kind, font=font)
    at = ((width - (box[2] - box[0])) / 2, (height - (box[3] - box[1])) / 2 - 40)
    pen.text((at[0] + 4, at[1] + 4), kind, font=font, fill=tuple(round(c * 0.7) for c in bottom))
    pen.text(at, kind, font=font, fill=(255, 255, 255))
    small = ImageFont.load_default(size=40)
    label = f"view {variant + 1}" if variant else product.name.split()[0]
    pen.text((40, height - 90), label, font=small, fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def seed_pictures(count: int) -> int:
    """Bring the products that have pictures up to ``count`` (the lowest ids first); the number
    of pictures added."""
    pictured = select(ProductImage.product_id).distinct()
    have = db.session.scalar(select(func.count()).select_from(pictured.subquery()))
    products = list(
        db.session.scalars(
            select(Product)
            .where(Product.id.not_in(pictured))
            .order_by(Product.id)
            .limit(max(0, count - have))
        )
    )
    db.session.commit()
    added = 0
    if not products:
        return 0
    with click.progressbar(products, label=f"Pictures of {len(products)} products") as bar:
        for number, product in enumerate(bar):
            views = 3 if number % GALLERY_EVERY == 0 else 1
            for variant in range(views):
                add_product_image(product.id, draw_picture(product, variant))
                added += 1
    return added
