"""Product pictures: an upload becomes a safe file in the media storage and a row; a delete
removes the row. Pictures appear in the product's cached reads (purged after each change).

The picture is made (decoded, checked, re-encoded: core/media/pictures.py) and its files are
stored before the transaction begins, so no row lock is held while the CPU works, and a row
never names a file that is not there yet. A transaction that then fails leaves two files that
no row names: ``prune_media`` removes such files once they are older than its grace period
(which also spares the files of uploads still in flight).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from ecommerce.core.cache.purge import invalidate_product
from ecommerce.core.db.session import locked
from ecommerce.core.media import PictureRefused, make_picture, media_storage
from ecommerce.errors import Conflict, NotFound, UnsupportedMediaType, ValidationFailed
from ecommerce.extensions import db
from ecommerce.products.models import Product, ProductImage
from ecommerce.products.services import get_product


def add_product_image(product_id: int, data: bytes) -> ProductImage:
    """Store a picture of the product (the last in its gallery) from the file's bytes."""
    get_product(product_id)  # 404 before any work
    db.session.commit()  # end the read: no connection is held while the picture is made
    if not data:
        raise ValidationFailed({"file": ["The file is empty."]})
    config = current_app.config
    try:
        picture = _off_the_event_loop(
            make_picture,
            data,
            max_pixels=config["MEDIA_MAX_PIXELS"],
            max_edge=config["MEDIA_MAX_EDGE"],
            thumbnail_edge=config["MEDIA_THUMBNAIL_EDGE"],
        )
    except PictureRefused as refused:
        if refused.status == 415:
            raise UnsupportedMediaType(refused.detail) from None
        raise ValidationFailed({"file": [refused.detail]}, refused.detail) from None
    storage = media_storage()
    storage.save(picture.full.name, picture.full.data)
    storage.save(picture.thumbnail.name, picture.thumbnail.data)

    session = db.session
    # The product row, locked: uploads to one product take their places one at a time (and the
    # product cannot be deleted under them).
    if (
        session.execute(locked(select(Product.id).where(Product.id == product_id), key_share=True)).first()
        is None
    ):
        raise NotFound("No such product.")
    count, last = session.execute(
        select(func.count(), func.max(ProductImage.position)).where(ProductImage.product_id == product_id)
    ).one()
    if count >= config["MEDIA_MAX_IMAGES"]:
        raise Conflict(f"A product has at most {config['MEDIA_MAX_IMAGES']} pictures; delete one first.")
    image = ProductImage(
        product_id=product_id,
        position=0 if last is None else last + 1,
        file_name=picture.full.name,
        width=picture.full.width,
        height=picture.full.height,
        thumbnail_name=picture.thumbnail.name,
        thumbnail_width=picture.thumbnail.width,
        thumbnail_height=picture.thumbnail.height,
    )
    session.add(image)
    session.flush()
    invalidate_product(session, product_id)
    session.commit()
    return image


def delete_product_image(product_id: int, image_id: int) -> None:
    """Remove a picture of the product (its files go at the next ``prune_media``)."""
    image = db.session.get(ProductImage, image_id)
    if image is None or image.product_id != product_id:
        raise NotFound("No such picture of this product.")
    db.session.delete(image)
    invalidate_product(db.session, product_id)
    db.session.commit()


def prune_media(older_than_seconds: float) -> dict[str, int]:
    """Remove stored files that no picture names and that were written more than
    ``older_than_seconds`` ago (a younger one may belong to an upload still in flight)."""
    storage = media_storage()
    named = set(db.session.scalars(select(ProductImage.file_name)))
    named.update(db.session.scalars(select(ProductImage.thumbnail_name)))
    db.session.commit()  # end the read before the slow walk over the files
    cutoff = time.time() - older_than_seconds
    removed = kept = 0
    for name, written_at in list(storage.names()):
        if name in named or written_at > cutoff:
            kept += 1
            continue
        storage.delete(name, unless_written_after=cutoff)
        removed += 1
    return {"removed": removed, "kept": kept}


_picture_pools: dict[int, Any] = {}  # per process (a forked worker makes its own)


def _off_the_event_loop(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``function`` in a thread of a small gevent pool when the worker runs on gevent.

    Decoding and encoding a large picture takes a few hundred milliseconds of CPU, and Pillow
    releases the GIL while it does: in a thread, every other request the worker holds goes on
    meanwhile; on the event loop they would all wait (benchmarks/picture_uploads.py). The pool
    has ``MEDIA_PICTURE_THREADS`` threads: more uploads at once wait their turn, so the memory
    of decoded pictures stays bounded (a 40-megapixel picture is 160 MB decoded)."""
    from gevent import monkey
    from gevent.threadpool import ThreadPool

    if not monkey.is_module_patched("threading"):
        return function(*args, **kwargs)
    pool = _picture_pools.get(os.getpid())
    if pool is None:
        pool = _picture_pools[os.getpid()] = ThreadPool(current_app.config["MEDIA_PICTURE_THREADS"])
    return pool.apply(function, args, kwargs)
