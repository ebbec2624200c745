"""GIFs and animations, measured and cleaned block by block: no frame is ever decoded.

Decoding an animation costs its whole canvas for every frame (Pillow composes
each GIF frame onto it), and re-encoding one holds every frame at once: an
8-frame GIF of 49 megapixels took a worker 19 s and 2.4 GB. Metadata in these
formats lives in blocks of its own (GIF comment and application extensions,
PNG text and eXIf chunks, WebP EXIF and XMP chunks), so it is removed by
copying the file without those blocks; the frames are kept byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

COPY_BYTES = 64 * 1024


class DamagedImage(ValueError):
    """The file is not laid out as its format says (truncated, or not that format)."""


@dataclass(frozen=True)
class GifLayout:
    frames: int
    # The canvas once every frame is placed: decoders grow the logical screen
    # to fit a frame that lies outside it, so the header's size is not enough.
    width: int
    height: int


def _exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise DamagedImage("the file ends in the middle of a block")
    return data


# --- GIF ------------------------------------------------------------------

# Application extensions that say how an animation loops; every other one
# (XMP, Photoshop/IPTC, ICC, vendors') is dropped with the comments.
GIF_KEPT_APPLICATIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
_GIF_CONTROL = b"\xf9"
_GIF_PLAIN_TEXT = b"\x01"
_GIF_APPLICATION = b"\xff"


def _colour_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _skip(_data: bytes) -> None:
    pass


def _sub_blocks(stream: IO[bytes], emit: Callable[[bytes], object]) -> None:
    """Pass on data sub-blocks (a length byte, then that many bytes) up to the empty one."""
    while True:
        length = _exactly(stream, 1)
        if length == b"\x00":
            emit(length)
            return
        emit(length + _exactly(stream, length[0]))


def _graphic_control(stream: IO[bytes]) -> bytes:
    """A graphic control extension as bytes to emit with its image; b"" if malformed."""
    parts: list[bytes] = []

    def keep(block: bytes) -> None:
        if len(parts) < 3:
            parts.append(block)

    _sub_blocks(stream, keep)
    # One 4-byte block and the terminator, by the specification.
    if len(parts) == 2 and len(parts[0]) == 5:
        return b"!" + _GIF_CONTROL + b"".join(parts)
    return b""


def _walk_gif(stream: IO[bytes], emit: Callable[[bytes], object]) -> GifLayout:
    stream.seek(0)
    header = _exactly(stream, 13)  # signature and logical screen descriptor
    if header[:6] not in (b"GIF87a", b"GIF89a"):
        raise DamagedImage("not a GIF")
    width, height = struct.unpack_from("<HH", header, 6)
    emit(header + _exactly(stream, _colour_table_size(header[10])))
    frames = 0
    control = b""  # a graphic control block belongs to the image that follows it
    while True:
        introducer = stream.read(1)
        if introducer in (b"", b";"):  # a missing trailer is tolerated, as decoders do
            break
        if introducer == b",":
            descriptor = _exactly(stream, 9)
            left, top, frame_width, frame_height, flags = struct.unpack("<4HB", descriptor)
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            frames += 1
            table = _exactly(stream, _colour_table_size(flags))
            emit(control + introducer + descriptor + table + _exactly(stream, 1))
            control = b""
            _sub_blocks(stream, emit)
        elif introducer == b"!":
            label = _exactly(stream, 1)
            if label == _GIF_CONTROL:
                control = _graphic_control(stream)
            elif label == _GIF_APPLICATION:
                length = _exactly(stream, 1)
                if length == b"\x00":
                    continue  # empty: already terminated
                identifier = _exactly(stream, length[0])
                if identifier[:11] in GIF_KEPT_APPLICATIONS:
                    emit(b"!" + label + length + identifier)
                    _sub_blocks(stream, emit)
                else:
                    _sub_blocks(stream, _skip)
            else:  # comments, plain text, unknown extensions: dropped
                _sub_blocks(stream, _skip)
                if label == _GIF_PLAIN_TEXT:
                    control = b""  # it governed the text just dropped
        # Any other byte is skipped, as decoders skip it.
    emit(b";")
    return GifLayout(frames, width, height)


def measure_gif(stream: IO[bytes]) -> GifLayout:
    """How many frames a GIF has and the canvas they are drawn on, from its blocks alone."""
    return _walk_gif(stream, _skip)


def strip_gif(stream: IO[bytes], out: IO[bytes]) -> GifLayout:
    """Copy a GIF without its comments, plain text and non-animation application blocks."""
    return _walk_gif(stream, out.write)


# --- PNG and APNG ---------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What a PNG needs to be drawn as made: the image, its animation and its
# colour. Text (tEXt, zTXt, iTXt with XMP), eXIf, tIME and private chunks go.
PNG_KEPT_CHUNKS = frozenset(
    (
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"acTL",
        b"fcTL",
        b"fdAT",
        b"cHRM",
        b"gAMA",
        b"iCCP",
        b"sBIT",
        b"sRGB",
        b"cICP",
        b"mDCV",
        b"cLLI",
        b"bKGD",
        b"pHYs",
    )
)


def _pass_on(stream: IO[bytes], size: int, emit: Callable[[bytes], object]) -> None:
    while size:
        chunk = _exactly(stream, min(size, COPY_BYTES))
        emit(chunk)
        size -= len(chunk)


def strip_png(stream: IO[bytes], out: IO[bytes]) -> None:
    """Copy a PNG or APNG with only the chunks that draw it (whole chunks: CRCs stay valid)."""
    stream.seek(0)
    if _exactly(stream, 8) != PNG_SIGNATURE:
        raise DamagedImage("not a PNG")
    out.write(PNG_SIGNATURE)
    while True:
        head = _exactly(stream, 8)
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            raise DamagedImage("a PNG chunk longer than the format allows")
        kept = kind in PNG_KEPT_CHUNKS
        if kept:
            out.write(head)
        _pass_on(stream, length + 4, out.write if kept else _skip)  # data and CRC
        if kind == b"IEND":
            return


# --- WebP -----------------------------------------------------------------

# VP8X flags for the chunks removed here.
_WEBP_EXIF_FLAG = 0x08
_WEBP_XMP_FLAG = 0x04
WEBP_KEPT_CHUNKS = frozenset((b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"))
# A frame holds its image (and alpha); unknown chunks inside it go too.
WEBP_KEPT_FRAME_CHUNKS = frozenset((b"ALPH", b"VP8 ", b"VP8L"))
_ANMF_HEADER = 16


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A run of RIFF chunks as (fourcc, payload) pairs; payloads are padded to even sizes."""
    chunks = []
    offset = 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise DamagedImage("the file ends in the middle of a block")
        kind, size = struct.unpack_from("<4sI", data, offset)
        payload = data[offset + 8 : offset + 8 + size]
        if len(payload) != size:
            raise DamagedImage("the file ends in the middle of a block")
        chunks.append((kind, payload))
        offset += 8 + size + (size & 1)
    return chunks


def _webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sI", kind, len(payload)) + payload + b"\x00" * (len(payload) & 1)


def strip_webp(stream: IO[bytes], out: IO[bytes]) -> None:
    """Copy a WebP (still or animated) without its EXIF, XMP and unknown chunks."""
    stream.seek(0)
    riff = _exactly(stream, 12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WEBP":
        raise DamagedImage("not a WebP")
    (size,) = struct.unpack_from("<I", riff, 4)
    # The whole file is at most one upload (MAX_UPLOAD_MB), so it is read at once.
    body = _exactly(stream, size - 4) if size >= 4 else b""
    kept = []
    for kind, payload in _webp_chunks(body):
        if kind == b"VP8X" and payload:
            payload = bytes([payload[0] & ~(_WEBP_EXIF_FLAG | _WEBP_XMP_FLAG)]) + payload[1:]
        elif kind == b"ANMF":
            frame = payload[_ANMF_HEADER:]
            payload = payload[:_ANMF_HEADER] + b"".join(
                _webp_chunk(inner, data)
                for inner, data in _webp_chunks(frame)
                if inner in WEBP_KEPT_FRAME_CHUNKS
            )
        elif kind not in WEBP_KEPT_CHUNKS:
            continue
        kept.append(_webp_chunk(kind, payload))
    body = b"".join(kept)
    out.write(b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body)
