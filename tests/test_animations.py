"""GIFs and animations are measured and cleaned block by block, their frames untouched."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image as PILImage
from PIL import ImageSequence, PngImagePlugin

from diary import animations

# One 1x1 frame's image data: LZW minimum code size 2, codes clear, 0, end.
ONE_PIXEL = b"\x02\x02\x44\x01\x00"
LOOP_FOREVER = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"


def tiny_gif(
    screen: tuple[int, int], placements: list[tuple[int, int]], extra: bytes = b""
) -> bytes:
    """A GIF of 1x1 frames at the given places on a logical screen of any size.

    `extra` (comments, application blocks) is written before the first frame.
    A screen of 7000x7000 costs a decoder 49 megapixels a frame; the file is bytes.
    """
    palette = b"\x00\x00\x00\xff\xff\xff"
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + palette + LOOP_FOREVER + extra
    for x, y in placements:
        control = b"!\xf9\x04\x00\x0a\x00\x00\x00"  # 100 ms
        out += control + b"," + struct.pack("<4HB", x, y, 1, 1, 0) + ONE_PIXEL
    return out + b";"


def comment_block(text: bytes) -> bytes:
    return b"!\xfe" + bytes([len(text)]) + text + b"\x00"


def xmp_block(text: bytes) -> bytes:
    return b"!\xff\x0bXMP DataXMP" + bytes([len(text)]) + text + b"\x00"


SECRETS = (b"secret place", b"SecretXMP", b"SecretMaker")


def frames_of(data: bytes) -> list[bytes]:
    with PILImage.open(io.BytesIO(data)) as image:
        return [frame.convert("RGBA").tobytes() for frame in ImageSequence.Iterator(image)]


def animation(fmt: str, **params) -> bytes:
    """Three distinct 20x20 frames in `fmt`, saved with whatever metadata `params` add."""
    frames = [PILImage.new("RGB", (20, 20), colour) for colour in ("red", "lime", "blue")]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params
    )
    return buffer.getvalue()


def exif_with_maker() -> PILImage.Exif:
    exif = PILImage.Exif()
    exif[0x010F] = "SecretMaker"
    return exif


def png_text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret place")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>SecretXMP</x:xmpmeta>")
    return info


def stripped(strip, data: bytes) -> bytes:
    out = io.BytesIO()
    strip(io.BytesIO(data), out)
    return out.getvalue()


def test_a_gif_loses_comments_and_xmp_anywhere_and_keeps_every_frame_and_the_loop():
    # A comment before the first frame and another between frames, and XMP.
    first = tiny_gif((10, 10), [(0, 0)], comment_block(b"secret place") + xmp_block(b"SecretXMP"))
    later = comment_block(b"secret place") + b"!\xf9\x04\x00\x0a\x00\x00\x00,"
    data = first[:-1] + later + struct.pack("<4HB", 9, 9, 1, 1, 0) + ONE_PIXEL + b";"

    clean = stripped(animations.strip_gif, data)

    assert not any(secret in clean for secret in SECRETS)
    assert frames_of(clean) == frames_of(data)
    with PILImage.open(io.BytesIO(clean)) as image:
        assert (image.n_frames, image.info["loop"], image.info["duration"]) == (2, 0, 100)


def test_a_clean_gif_is_copied_byte_for_byte():
    buffer = io.BytesIO()
    PILImage.new("P", (30, 20), 1).save(buffer, "GIF")

    assert stripped(animations.strip_gif, buffer.getvalue()) == buffer.getvalue()


def test_a_gif_is_measured_with_the_frames_it_places_outside_its_screen():
    data = tiny_gif((1, 1), [(0, 0), (6999, 4999), (0, 0)])

    assert animations.measure_gif(io.BytesIO(data)) == animations.GifLayout(3, 7000, 5000)


@pytest.mark.parametrize(
    ("fmt", "params", "strip"),
    [
        pytest.param(
            "PNG",
            {"pnginfo": png_text(), "exif": exif_with_maker()},
            animations.strip_png,
            id="apng",
        ),
        pytest.param(
            "WEBP",
            {"exif": exif_with_maker(), "xmp": b"<x:xmpmeta>SecretXMP</x:xmpmeta>"},
            animations.strip_webp,
            id="animated-webp",
        ),
    ],
)
def test_an_animation_loses_its_metadata_chunks_and_keeps_every_frame(fmt, params, strip):
    data = animation(fmt, **params)
    assert any(secret in data for secret in SECRETS)

    clean = stripped(strip, data)

    assert not any(secret in clean for secret in SECRETS)
    assert frames_of(clean) == frames_of(data)
    with PILImage.open(io.BytesIO(clean)) as image:
        assert image.n_frames == 3
        assert not image.getexif()
        assert "xmp" not in image.info and "exif" not in image.info


@pytest.mark.parametrize(
    ("data", "strip"),
    [
        (tiny_gif((10, 10), [(0, 0)])[:-4], animations.strip_gif),
        (animation("PNG")[:-30], animations.strip_png),
        (animation("WEBP")[:-30], animations.strip_webp),
        (b"GIF87a", animations.strip_gif),
        (b"not a png at all", animations.strip_png),
        (b"RIFF\x04\x00\x00\x00WAVE", animations.strip_webp),
    ],
)
def test_a_truncated_or_mislabelled_file_is_damaged(data, strip):
    with pytest.raises(animations.DamagedImage):
        stripped(strip, data)
