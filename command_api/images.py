"""Photo sanitising and thumbnails with Pillow: pure functions over bytes, no I/O.

The uploaded bytes decide what the file is (never the client's Content-Type); anything
Pillow cannot open as JPEG, PNG or WebP is refused. Re-encoding the pixels drops every
piece of metadata (EXIF carries GPS positions and device serials); the EXIF orientation
is applied first so the photo still looks the right way up.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}
THUMBNAIL_SIZE = (320, 320)


class ImageRefused(ValueError):
    """The upload is not an acceptable image."""

    code = "unsupported-image"


class ImageTooLarge(ImageRefused):
    """Too many bytes or too many pixels (a decompression bomb)."""

    code = "image-too-large"


@dataclass(frozen=True, slots=True)
class Sanitised:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


def sanitise(raw: bytes, max_bytes: int, max_pixels: int) -> Sanitised:
    """The photo re-encoded without metadata, or ImageRefused."""
    if len(raw) > max_bytes:
        raise ImageTooLarge(f"the photo is {len(raw)} bytes; the limit is {max_bytes}")
    image = _open(raw, max_pixels)
    content_type, extension = FORMATS[image.format or ""]
    try:
        upright = ImageOps.exif_transpose(image)
        return Sanitised(_encode(upright, image.format or "JPEG"), content_type, extension, *upright.size)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageRefused("the image data is damaged") from e


def thumbnail(raw: bytes, max_pixels: int) -> Sanitised:
    """A JPEG of at most THUMBNAIL_SIZE, from an already sanitised photo."""
    image = _open(raw, max_pixels)
    image.thumbnail(THUMBNAIL_SIZE)
    return Sanitised(_encode(image, "JPEG"), "image/jpeg", "jpg", *image.size)


def _open(raw: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=list(FORMATS))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"the photo has {width}x{height} pixels; the limit is {max_pixels} pixels")
            image.load()
    except ImageTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge("the photo has too many pixels") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageRefused("the upload is not a JPEG, PNG or WebP image") from e
    return image


def _encode(image: Image.Image, fmt: str) -> bytes:
    """Pixels only: a fresh image object carries no EXIF, XMP, ICC or comment blocks over."""
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    out = io.BytesIO()
    options = {"quality": 85, "optimize": True} if fmt == "JPEG" else {}
    clean.save(out, format=fmt, **options)
    return out.getvalue()
