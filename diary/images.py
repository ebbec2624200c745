"""Checking uploaded photos by their content, and naming them in storage."""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from .errors import ContentTooLarge, UnsupportedMedia
from .models import Image

# Pillow format name -> (content type, file extension) of what we accept.
ACCEPTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}

# About 50 megapixels: larger than any phone photo, small enough that one decode
# fits a 0.5 GB instance. Beyond it an image is treated as a decompression bomb.
MAX_PIXELS = 50_000_000


@dataclass
class IncomingImage:
    """An upload that has been checked and is ready to store."""

    stream: IO[bytes]
    original_filename: str
    content_type: str
    extension: str
    width: int
    height: int
    byte_size: int


def inspect_upload(upload: FileStorage, field: str = "file") -> IncomingImage:
    """Identify the image by decoding its header; the client's name and type are ignored."""
    stream = upload.stream
    stream.seek(0, 2)
    byte_size = stream.tell()
    stream.seek(0)
    if byte_size == 0:
        raise UnsupportedMedia(field, "The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(stream) as image:
                image_format = image.format or ""
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ContentTooLarge(
                        field, f"The image has more than {MAX_PIXELS // 1_000_000} megapixels."
                    )
                image.verify()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ContentTooLarge(field, "The image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UnsupportedMedia(
            field, "The file is not an image we can read (JPEG, PNG, WebP or GIF)."
        ) from None
    if image_format not in ACCEPTED_FORMATS:
        raise UnsupportedMedia(field, f"{image_format} images are not accepted.")
    stream.seek(0)
    content_type, extension = ACCEPTED_FORMATS[image_format]
    return IncomingImage(
        stream=stream,
        original_filename=(upload.filename or "")[:255],
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
        byte_size=byte_size,
    )


def new_storage_key(user_id: int, extension: str) -> str:
    """A fresh key per upload: the original service stored `dinner.jpg` under
    `dinner.jpg`, so a second photo of that name replaced the first."""
    return f"{user_id}/{secrets.token_hex(16)}/original.{extension}"


def object_keys(image: Image) -> list[str]:
    """Every object stored for one image (the original, and any sizes made from it)."""
    return [image.storage_key]


def owner_of_key(key: str) -> int | None:
    """The user id a storage key was made for, or None if it is not one of ours."""
    head, _, _ = key.partition("/")
    return int(head) if head.isdigit() else None
