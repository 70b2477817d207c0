"""Uploaded pictures made safe to serve: decoded and re-encoded by Pillow, never passed on.

What leaves here is a new file that Pillow wrote from pixels alone: no EXIF (camera, GPS), no
ICC profile or text chunk, nothing hidden after the image data, and only JPEG, PNG or WebP
(the format the picture came in). The order of the checks matters:

1. Pillow identifies the format from the content (never from a name or a Content-Type), and
   only its JPEG, PNG and WebP decoders are offered: anything else (SVG, HTML, a text file
   named .png, a GIF) is refused as unsupported.
2. The size in the header is checked against ``max_pixels`` before a single pixel is
   decompressed: a "pixel bomb" (a small file that decodes to gigabytes) is refused unread.
3. Only then is the picture decoded (JPEGs straight at a reduced scale when they are larger
   than needed), turned upright by its EXIF orientation, bounded to ``max_edge`` and given a
   thumbnail of ``thumbnail_edge``.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP")
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_SAVE_OPTIONS = {
    "JPEG": {"quality": 85, "optimize": True, "progressive": True},
    "PNG": {"optimize": False, "compress_level": 6},
    "WEBP": {"quality": 85, "method": 4},
}
# The modes each format's encoder takes as they are; any other is converted first.
_KEPT_MODES = {"JPEG": {"RGB", "L"}, "PNG": {"1", "L", "LA", "P", "RGB", "RGBA"}, "WEBP": {"RGB", "RGBA"}}


class PictureRefused(Exception):
    """Not a picture we take; ``status`` is the HTTP answer (415 unsupported, 422 invalid)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Encoded:
    name: str  # content-hashed: "ab/<32 hex>.jpg"
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Picture:
    format: str
    full: Encoded
    thumbnail: Encoded

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


# Errors Pillow raises on damaged data, in the pixels or in the metadata (an EXIF block whose
# offsets point nowhere fails in exif_transpose with struct.error or TypeError).
_DAMAGED = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, EOFError)


def make_picture(data: bytes, *, max_pixels: int, max_edge: int, thumbnail_edge: int) -> Picture:
    """The re-encoded picture and its thumbnail, or ``PictureRefused``.

    The picture is turned upright and bounded in place, and the thumbnail is made from the bounded
    copy: at most two decoded copies are alive at once (an operation's input and its output)."""
    picture = _open(data, max_pixels)
    # A JPEG's multi-picture variant (MPO, from some cameras) is a JPEG: its first picture.
    kind = "JPEG" if picture.format == "MPO" else picture.format
    try:
        if kind == "JPEG":
            # Decode at the smallest scale (1/2, 1/4, 1/8) still above max_edge: a 40 MP photo
            # costs a fraction of its full decode.
            picture.draft(picture.mode, (max_edge, max_edge))
        picture.load()
        _turn_upright(picture)
        picture = _encodable(picture, kind)
        picture.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
        full = _encode(picture, kind)
        picture.thumbnail((thumbnail_edge, thumbnail_edge), Image.Resampling.LANCZOS)
        return Picture(kind, full, _encode(picture, kind))
    except (*_DAMAGED, Image.DecompressionBombError) as error:
        raise PictureRefused(422, f"The {kind} file is damaged or incomplete ({error}).") from None


def _turn_upright(picture: Image.Image) -> None:
    """Apply the EXIF orientation in place; EXIF too damaged to read leaves the picture as stored
    (its metadata is dropped anyway: a photo is not refused for a broken camera tag)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on each corrupt tag
        try:
            ImageOps.exif_transpose(picture, in_place=True)
        except _DAMAGED:
            pass


def _open(data: bytes, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns above its own bound (and refuses above twice it); ours comes next.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            picture = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError:
            raise PictureRefused(422, _too_many_pixels(None, max_pixels)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise PictureRefused(415, "The file is not a JPEG, PNG or WebP picture.") from None
    if picture.format not in (*FORMATS, "MPO"):
        raise PictureRefused(415, "The file is not a JPEG, PNG or WebP picture.")
    width, height = picture.size
    if width <= 0 or height <= 0:
        raise PictureRefused(422, "The picture has no pixels.")
    if width * height > max_pixels:
        raise PictureRefused(422, _too_many_pixels(picture.size, max_pixels))
    return picture


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> str:
    stated = f" ({size[0]} x {size[1]})" if size else ""
    return f"The picture{stated} has more than {max_pixels:,} pixels."


def _encodable(picture: Image.Image, kind: str) -> Image.Image:
    """The picture in a mode its format's encoder takes, with no metadata left on it."""
    if picture.mode not in _KEPT_MODES[kind]:
        has_alpha = picture.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in picture.info
        picture = picture.convert("RGBA" if has_alpha and kind != "JPEG" else "RGB")
    # Pillow's encoders write what ``info`` carries (an ICC profile, EXIF, text): keep only
    # what the pixels need (a palette's transparent index).
    kept = {"transparency": picture.info["transparency"]} if "transparency" in picture.info else {}
    picture.info = kept
    return picture


def _encode(picture: Image.Image, kind: str) -> Encoded:
    buffer = io.BytesIO()
    picture.save(buffer, kind, **_SAVE_OPTIONS[kind])
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    return Encoded(f"{digest[:2]}/{digest[2:34]}{EXTENSIONS[kind]}", data, picture.width, picture.height)
