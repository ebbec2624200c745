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

from . import animations
from .errors import ContentTooLarge, UnsupportedMedia
from .inputs import clean_filename, whole_number
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

# Whoever shows an animation (GIF, APNG, animated WebP) decodes every frame
# on its whole canvas: 8 frames of 49 megapixels took a worker 19 s and
# 2.4 GB, 340 frames of 4 megapixels 67 s. Together the frames may have no
# more pixels than the largest still photo, and there may be at most
# MAX_FRAMES of them; both are read from the headers before anything is
# decoded. Within the caps an animation is kept (metadata removed block by
# block, see diary.animations) and its sizes are made from the first frame.
MAX_FRAMES = 1000
MAX_ANIMATION_PIXELS = 50_000_000

# Pixels one request may decode across all its photos (an entry's uploads,
# or an import through the API). Twenty uploads of a 160 KB PNG of 49
# megapixels each took 40 s of CPU (2 s each) within MAX_UPLOAD_MB; this
# still lets through twenty 12-megapixel or five 48-megapixel photos.
MAX_REQUEST_PIXELS = 250_000_000

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


@dataclass(frozen=True)
class Shape:
    """What an upload's headers say, read before anything is decoded."""

    image_format: str
    width: int
    height: int
    frames: int
    pixels: int  # what decoding it whole makes: every frame of an animation counts


class PixelBudget:
    """The pixels a request may still decode; each photo is checked before it is decoded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, pixels: int, field_name: str) -> None:
        if pixels > self.left:
            raise ContentTooLarge(
                field_name,
                "The photos of one request have more than %(n)s megapixels in all; "
                "send fewer at a time.",
                n=self.limit // 1_000_000,
            )
        self.left -= pixels


def _refuse_unreadable(field_name: str) -> UnsupportedMedia:
    return UnsupportedMedia(
        field_name, "The file is not an image we can read (JPEG, PNG, WebP, GIF or HEIC)."
    )


def _refuse_too_many_pixels(field_name: str) -> ContentTooLarge:
    return ContentTooLarge(
        field_name, "The image has more than %(n)s megapixels.", n=MAX_PIXELS // 1_000_000
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
                    raise _refuse_too_many_pixels(field_name)
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


# Formats cleaned block by block: GIFs always (Pillow's GIF writer carries
# the comment over), APNG and animated WebP when animated.
_STRIPPERS = {
    "GIF": animations.strip_gif,
    "PNG": animations.strip_png,
    "WEBP": animations.strip_webp,
}


def _stripped(stream: IO[bytes], shape: Shape, field_name: str) -> Variant:
    """The file without its metadata blocks, every frame kept as it was: nothing decoded."""
    content_type, extension = ACCEPTED_FORMATS[shape.image_format]
    out = _temporary()
    try:
        _STRIPPERS[shape.image_format](stream, out)
    except animations.DamagedImage:
        out.close()
        raise _refuse_unreadable(field_name) from None
    size = _finish(out)
    return Variant("original", out, content_type, extension, shape.width, shape.height, size)


def _clean_original(stream: IO[bytes], shape: Shape, field_name: str) -> Variant:
    """The original as stored: oriented, with all metadata removed.

    A still file that carries no metadata and needs no rotation is kept byte
    for byte (so an exported photo imports unchanged); other stills are
    re-encoded. GIFs and animations are never re-encoded: their metadata
    blocks are dropped and their frames kept (orientation is a still photo's).
    """
    image_format = shape.image_format
    if image_format == "GIF" or (shape.frames > 1 and image_format in _STRIPPERS):
        return _stripped(stream, shape, field_name)
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
        # HEIF: only the primary image is decoded and kept (as JPEG).
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


def examine(stream: IO[bytes], field: str = "file") -> Shape:
    """An upload's format, size and frames, from its headers: nothing is decoded.

    Refusals: 415 for what is not a readable JPEG/PNG/WebP/GIF/HEIC (renamed
    text, HTML, SVG), 413 for a decompression bomb or an animation past
    MAX_FRAMES or MAX_ANIMATION_PIXELS.
    """
    stream.seek(0, 2)
    if stream.tell() == 0:
        raise UnsupportedMedia(field, "The file is empty.")
    with _opened(stream, field) as image:
        image_format = image.format or ""
        if not image_format:
            raise _refuse_unreadable(field)
        if image_format not in ACCEPTED_FORMATS:
            raise UnsupportedMedia(field, "%(n)s images are not accepted.", n=image_format)
        width, height = image.size
        # Pillow finds a GIF's frames by walking it too, but learns nothing
        # of their extents that way; the walk below does both.
        frames = 1 if image_format == "GIF" else getattr(image, "n_frames", 1)
        image.verify()
    canvas = width * height
    if image_format == "GIF":
        try:
            layout = animations.measure_gif(stream)
        except animations.DamagedImage:
            raise _refuse_unreadable(field) from None
        frames, canvas = layout.frames, layout.width * layout.height
        if canvas > MAX_PIXELS:
            raise _refuse_too_many_pixels(field)
    if frames > MAX_FRAMES:
        raise ContentTooLarge(field, "The animation has more than %(n)s frames.", n=MAX_FRAMES)
    # A HEIF file may hold several images; only the primary one is ever decoded.
    pixels = canvas if image_format == "HEIF" else frames * canvas
    if frames > 1 and pixels > MAX_ANIMATION_PIXELS:
        raise ContentTooLarge(
            field,
            "The frames of the animation have more than %(n)s megapixels together.",
            n=MAX_ANIMATION_PIXELS // 1_000_000,
        )
    return Shape(image_format, width, height, frames, pixels)


def inspect_upload(
    upload: FileStorage, field: str = "file", budget: PixelBudget | None = None
) -> IncomingImage:
    """Check an upload by its content and make every stored size of it.

    The client's filename and content type are ignored. What `examine`
    refuses is refused before anything is decoded, and so is a photo that
    would take `budget` (the request's) past its limit. Truncated files are
    a 415. Nothing is stored here.
    """
    shape = examine(upload.stream, field)
    if budget is not None:
        budget.spend(shape.pixels, field)
    return _made_ready(upload, shape, field)


def _made_ready(upload: FileStorage, shape: Shape, field: str) -> IncomingImage:
    stream = upload.stream
    with _decoding:
        original = _clean_original(stream, shape, field)
        incoming = IncomingImage(
            original_filename=clean_filename(upload.filename), variants=[original]
        )
        try:
            incoming.variants += make_sizes(original.stream, field)
        except BaseException:
            incoming.close()
            raise
    original.stream.seek(0)
    return incoming


def inspect_uploads(uploads: Sequence[FileStorage], field: str = "file") -> list[IncomingImage]:
    """Check every upload before any is stored, so a bad third photo stores nothing.

    All their headers are read first: a request past MAX_REQUEST_PIXELS is
    refused before any photo of it is decoded.
    """
    shapes = [examine(upload.stream, field) for upload in uploads]
    budget = PixelBudget(MAX_REQUEST_PIXELS)
    for shape in shapes:
        budget.spend(shape.pixels, field)
    incoming: list[IncomingImage] = []
    try:
        for upload, shape in zip(uploads, shapes, strict=True):
            incoming.append(_made_ready(upload, shape, field))
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
    return whole_number(head)
