"""Media: product pictures made safe to serve (``pictures.py``) and kept under content-hashed
names by a storage (``storage.py``). ``init_media`` binds the storage that ``MEDIA_STORAGE``
names to the app; code reaches it through ``media_storage()``."""

from __future__ import annotations

from flask import Flask, current_app

from ecommerce.core.media.pictures import Picture, PictureRefused, make_picture
from ecommerce.core.media.storage import STORAGES, MediaStorage

# A stored file never changes under its name (the name is its content's hash): browsers, nginx
# and any CDN may keep it for a year without asking again.
MEDIA_MAX_AGE = 365 * 24 * 3600

__all__ = [
    "MEDIA_MAX_AGE",
    "MediaStorage",
    "Picture",
    "PictureRefused",
    "init_media",
    "make_picture",
    "media_storage",
]


def init_media(app: Flask) -> None:
    kind = app.config["MEDIA_STORAGE"]
    if kind not in STORAGES:
        raise RuntimeError(f"MEDIA_STORAGE={kind!r}: expected one of {', '.join(sorted(STORAGES))}")
    app.extensions["media_storage"] = STORAGES[kind](app.config)


def media_storage() -> MediaStorage:
    return current_app.extensions["media_storage"]
