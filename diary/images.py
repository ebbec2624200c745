"""Photos: checked by their content, cleaned of metadata, and made into sizes.

Every upload becomes up to three objects under one key prefix
(`<user id>/<random>/`): the cleaned original, a display size (about 1600 px
on the long side) and a thumbnail (about 400 px), the last two as WebP.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import pillow_heif
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from .errors import ContentTooLarge, UnsupportedMedia
from .models import Image

# Phones upload HEIC/HEIF; browsers cannot show it, so it is stored as JPEG.
pillow_heif.register_heif_opener()

# Pillow format name -> (content type, file extension) stored for the original.
ACCEPTED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
    "HEIF": ("image/jpeg", "jpg"),
}

# About 50 megapixels: larger than any phone photo, small enough that one decode
# fits a 0.5 GB instance. Beyond it an image is treated as a decompression bomb.
MAX_PIXELS = 50_000_000
# Pillow's own guard raises for anything past twice its limit; ours comes first.
PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS

DISPLAY_SIZE = 1600
THUMB_SIZE = 400
SIZES = {"display": DISPLAY_SIZE, "thumb": THUMB_SIZE}
WEBP = ("image/webp", "webp")

# One photo is decoded and resized at a time in each process. A gthread worker
# runs several requests at once; unbounded, four 3 MB photos decoded together
# took one worker to 261 MB RSS (bench). Workers, one per core, still use every
# core; a waiting upload queues behind the decodes ahead of it (about 0.3 s of
# CPU each for a 12-megapixel photo).
_decoding = threading.BoundedSemaphore(1)

# What counts as metadata to remove: EXIF (with GPS), XMP, comments, IPTC, text chunks.
METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "comment", "photoshop", "iptc")
EXIF_ORIENTATION = 0x0112


@dataclass
class Variant:
    """One stored object of a photo: its bytes (a temporary file) and what they are."""

    name: str  # "original", "display" or "thumb"
    stream: IO[bytes]
    content_type: str
    extension: str
    width: int
    height: int
    byte_size: int


@dataclass
class IncomingImage:
    """An upload that has been checked and made into all its sizes, ready to store."""

    original_filename: str
    variants: list[Variant] = field(default_factory=list)

    def close(self) -> None:
        """Release the temporary files; the upload's own stream is Werkzeug's to close."""
        for variant in self.variants:
            variant.stream.close()

    @property
    def original(self) -> Variant:
        return self.variants[0]

    # The original's facts, as the Image row records them.
    @property
    def stream(self) -> IO[bytes]:
        return self.original.stream

    @property
    def content_type(self) -> str:
        return self.original.content_type

    @property
    def extension(self) -> str:
        return self.original.extension

    @property
    def width(self) -> int:
        return self.original.width

    @property
    def height(self) -> int:
        return self.original.height

    @property
    def byte_size(self) -> int:
        return self.original.byte_size


def _refuse_unreadable(field_name: str) -> UnsupportedMedia:
    return UnsupportedMedia(
        field_name, "The file is not an image we can read (JPEG, PNG, WebP, GIF or HEIC)."
    )


@contextmanager
def _opened(stream: IO[bytes], field_name: str) -> Iterator[PILImage.Image]:
    """Open an image by its content, turning every decoding failure into a clear refusal."""
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(stream) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ContentTooLarge(
                        field_name,
                        "The image has more than %(n)s megapixels.",
                        n=MAX_PIXELS // 1_000_000,
                    )
                yield image
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ContentTooLarge(field_name, "The image has too many pixels.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise _refuse_unreadable(field_name) from None


def _has_metadata(image: PILImage.Image) -> bool:
    if any(key in image.info for key in METADATA_KEYS):
        return True
    if getattr(image, "text", None):  # PNG tEXt/iTXt/zTXt chunks
        return True
    return bool(image.getexif())


def _temporary() -> IO[bytes]:
    # Spools to disk past 1 MB: a full-size upload is never held whole in memory.
    return tempfile.SpooledTemporaryFile(max_size=1024 * 1024)


def _finish(stream: IO[bytes]) -> int:
    size = stream.tell()
    stream.seek(0)
    return size


def _clean_original(stream: IO[bytes], image_format: str, field_name: str) -> Variant:
    """The original as stored: oriented, with all metadata removed.

    A file that carries no metadata and needs no rotation is kept byte for byte
    (so an exported photo imports unchanged); anything else is re-encoded.
    """
    content_type, extension = ACCEPTED_FORMATS[image_format]
    with _opened(stream, field_name) as image:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        if image_format != "HEIF" and orientation == 1 and not _has_metadata(image):
            image.load()  # a truncated file fails here, before anything is stored
            width, height = image.size
            stream.seek(0, 2)
            byte_size = _finish(stream)
            return Variant("original", stream, content_type, extension, width, height, byte_size)

        out = _temporary()
        icc = image.info.get("icc_profile")
        if image_format == "GIF":
            # Frames keep their animation; comments and extensions are dropped.
            image.save(out, "GIF", save_all=True)
            width, height = image.size
        else:
            oriented = ImageOps.exif_transpose(image)
            # Pillow carries EXIF (GPS included) and comments over from `info`
            # into the saved file unless they are gone from the image itself.
            oriented.info = {}
            width, height = oriented.size
            if image_format in ("JPEG", "HEIF"):
                if oriented.mode not in ("RGB", "L"):
                    oriented = oriented.convert("RGB")
                oriented.save(out, "JPEG", quality=90, optimize=True, icc_profile=icc)
            elif image_format == "PNG":
                oriented.save(out, "PNG", optimize=True, icc_profile=icc)
            else:
                oriented.save(out, "WEBP", quality=90, icc_profile=icc)
            del oriented
        return Variant("original", out, content_type, extension, width, height, _finish(out))


def make_sizes(stream: IO[bytes], field_name: str) -> list[Variant]:
    """Display size and thumbnail, decoded once at reduced scale.

    JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale, so a
    12-megapixel photo is never fully decoded to make a 1600 px copy.
    """
    variants: list[Variant] = []
    with _opened(stream, field_name) as image:
        if image.format == "JPEG":
            # Ask for the display size with the photo's own proportions: libjpeg
            # then picks the smallest scale that still covers it.
            scale = DISPLAY_SIZE / max(image.size)
            if scale < 1:
                image.draft("RGB", (int(image.width * scale), int(image.height * scale)))
        sized = ImageOps.exif_transpose(image)
        sized.info = {}
        if sized.mode not in ("RGB", "RGBA"):
            sized = sized.convert("RGBA" if "A" in sized.getbands() else "RGB")
        for name, limit in SIZES.items():
            sized.thumbnail((limit, limit), PILImage.Resampling.LANCZOS)
            out = _temporary()
            sized.save(out, "WEBP", quality=82, method=2)  # method 2: ~30% less CPU than 4 (bench)
            width, height = sized.size
            variants.append(Variant(name, out, *WEBP, width, height, _finish(out)))
        del sized
    return variants


def inspect_upload(upload: FileStorage, field: str = "file") -> IncomingImage:
    """Check an upload by its content and make every stored size of it.

    The client's filename and content type are ignored. Refusals: 415 for what
    is not a readable JPEG/PNG/WebP/GIF/HEIC (renamed text, HTML, SVG,
    truncated files), 413 for decompression bombs. Nothing is stored here.
    """
    stream = upload.stream
    stream.seek(0, 2)
    if stream.tell() == 0:
        raise UnsupportedMedia(field, "The file is empty.")
    with _opened(stream, field) as image:
        image_format = image.format or ""
        if image_format not in ACCEPTED_FORMATS:
            raise UnsupportedMedia(
                field, "%(n)s images are not accepted.", n=image_format or "This"
            )
        image.verify()
    with _decoding:
        original = _clean_original(stream, image_format, field)
        incoming = IncomingImage(
            original_filename=(upload.filename or "")[:255], variants=[original]
        )
        try:
            incoming.variants += make_sizes(original.stream, field)
        except BaseException:
            incoming.close()
            raise
    original.stream.seek(0)
    return incoming


def inspect_uploads(uploads: Sequence[FileStorage], field: str = "file") -> list[IncomingImage]:
    """Check every upload before any is stored, so a bad third photo stores nothing."""
    incoming: list[IncomingImage] = []
    try:
        for upload in uploads:
            incoming.append(inspect_upload(upload, field))
    except BaseException:
        close_all(incoming)
        raise
    return incoming


def close_all(images: Sequence[IncomingImage]) -> None:
    for image in images:
        image.close()


def new_storage_prefix(user_id: int) -> str:
    """A fresh prefix per upload: the original service stored `dinner.jpg` under
    `dinner.jpg`, so a second photo of that name replaced the first."""
    return f"{user_id}/{secrets.token_hex(16)}/"


def new_storage_key(user_id: int, extension: str) -> str:
    return f"{new_storage_prefix(user_id)}original.{extension}"


def variant_key(prefix: str, variant: Variant) -> str:
    return f"{prefix}{variant.name}.{variant.extension}"


def object_keys(image: Image) -> list[str]:
    """Every object stored for one image (the original, and any sizes made from it)."""
    return [key for key in (image.storage_key, image.display_key, image.thumb_key) if key]


def owner_of_key(key: str) -> int | None:
    """The user id a storage key was made for, or None if it is not one of ours."""
    head, _, _ = key.partition("/")
    return int(head) if head.isdigit() else None
