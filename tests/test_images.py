"""Photos: checked by content, stripped of metadata, oriented, and stored in three sizes."""

from __future__ import annotations

import io

import pillow_heif
import pytest
from PIL import Image as PILImage
from PIL import ImageChops

from diary.infra.storage import S3Storage, current_storage

from .conftest import row_counts, stored_keys
from .test_animations import (
    SECRETS,
    animation,
    comment_block,
    exif_with_maker,
    frames_of,
    png_text,
    tiny_gif,
    xmp_block,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg_with_gps_and_rotation(size=(300, 200), orientation=6) -> bytes:
    """A phone-like JPEG: GPS coordinates in EXIF and 'rotate 90°' orientation."""
    exif = PILImage.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (35.0, 39.0, 29.0), 3: "E", 4: (139.0, 42.0, 0.0)})
    buffer = io.BytesIO()
    PILImage.new("RGB", size, "orange").save(buffer, "JPEG", exif=exif, comment=b"secret place")
    return buffer.getvalue()


def post_photo(client, auth, data: bytes, name: str = "photo.jpg"):
    return client.post(
        "/api/v1/entries", data={"text": "photo", "file": (io.BytesIO(data), name)}, headers=auth
    )


def stored_object(app, key: str) -> bytes:
    with app.app_context():
        return current_storage().get(key)


def test_gps_and_all_metadata_are_removed_and_orientation_applied(app, client, auth):
    response = post_photo(client, auth, jpeg_with_gps_and_rotation())

    assert response.status_code == 201, response.get_json()
    image = response.get_json()["images"][0]
    assert (image["width"], image["height"]) == (200, 300)  # rotated upright
    with app.app_context():
        from diary.extensions import db
        from diary.models import Image

        row = db.session.scalars(db.select(Image)).one()
        keys = [row.storage_key, row.display_key, row.thumb_key]
    for key in keys:
        stored = PILImage.open(io.BytesIO(stored_object(app, key)))
        assert not stored.getexif(), key
        assert "exif" not in stored.info and "comment" not in stored.info, key
        assert b"secret place" not in stored_object(app, key)


def test_every_photo_gets_a_display_size_and_a_thumbnail(app, client, auth):
    buffer = io.BytesIO()
    PILImage.new("RGB", (4000, 3000), "navy").save(buffer, "JPEG")

    image = post_photo(client, auth, buffer.getvalue()).get_json()["images"][0]

    assert (image["width"], image["height"]) == (4000, 3000)
    with app.app_context():
        from diary.extensions import db
        from diary.models import Image

        row = db.session.scalars(db.select(Image)).one()
        assert (row.display_width, row.display_height) == (1600, 1200)
        assert (row.thumb_width, row.thumb_height) == (400, 300)
        assert row.display_key.rsplit("/", 1)[0] == row.storage_key.rsplit("/", 1)[0]
        thumb = PILImage.open(io.BytesIO(current_storage().get(row.thumb_key)))
        assert (thumb.format, thumb.size) == ("WEBP", (400, 300))
        assert row.thumb_bytes == len(current_storage().get(row.thumb_key))
    assert image["thumbnail_url"] != image["url"] != image["display_url"]


def test_every_size_is_served_with_its_type_and_a_long_cache_lifetime(app, client, auth, jpeg):
    image = post_photo(client, auth, jpeg).get_json()["images"][0]
    with app.app_context():
        storage = current_storage()
        if not isinstance(storage, S3Storage):
            # Local storage: the app itself serves each size after the ownership check.
            for url, content_type in (
                (image["url"], "image/jpeg"),
                (image["display_url"], "image/webp"),
                (image["thumbnail_url"], "image/webp"),
            ):
                with client.get(url, headers=auth) as served:
                    assert served.status_code == 200
                    assert served.mimetype == content_type
                    assert "immutable" in served.headers["Cache-Control"]
            return
        heads = {
            key: storage.client.head_object(Bucket=storage.bucket, Key=key)
            for key in stored_keys(app)
        }
    assert {h["ContentType"] for k, h in heads.items() if k.endswith(".webp")} == {"image/webp"}
    assert {h["ContentType"] for k, h in heads.items() if k.endswith(".jpg")} == {"image/jpeg"}
    assert all("immutable" in h["CacheControl"] for h in heads.values())


def test_heic_from_a_phone_is_accepted_and_stored_as_jpeg(app, client, auth):
    heif = pillow_heif.from_pillow(PILImage.new("RGB", (64, 48), "green"))
    buffer = io.BytesIO()
    heif.save(buffer, quality=80)

    response = post_photo(client, auth, buffer.getvalue(), "IMG_0001.HEIC")

    assert response.status_code == 201, response.get_json()
    image = response.get_json()["images"][0]
    assert (image["content_type"], image["width"], image["height"]) == ("image/jpeg", 64, 48)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge canvas: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    PILImage.effect_noise((400, 400), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


REFUSED = [
    pytest.param(b"Dear diary, this is plain text.", "notes.jpg", 415, id="renamed-text"),
    pytest.param(b"<!doctype html><script>alert(1)</script>", "page.png", 415, id="html"),
    pytest.param(
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        "vector.svg",
        415,
        id="svg",
    ),
    pytest.param(_truncated_jpeg(), "cut.jpg", 415, id="truncated-jpeg"),
    pytest.param(_png_claiming(100_000, 100_000), "bomb.png", 413, id="decompression-bomb"),
    pytest.param(b"", "empty.jpg", 415, id="empty"),
]


@pytest.mark.parametrize(("data", "name", "status"), REFUSED)
def test_what_is_not_a_safe_photo_is_refused_and_nothing_stored(
    app, client, auth, data, name, status
):
    response = post_photo(client, auth, data, name)

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert row_counts(app)["images"] == 0 and row_counts(app)["entries"] == 0
    assert stored_keys(app) == set()


def test_the_thumbnail_of_a_large_jpeg_is_made_in_draft_mode(monkeypatch):
    """libjpeg decodes at reduced scale: the full 12 MP image is never decoded for sizes."""
    from werkzeug.datastructures import FileStorage

    from diary import images

    buffer = io.BytesIO()
    PILImage.new("RGB", (4000, 3000), "red").save(buffer, "JPEG")
    decoded_sizes: list[tuple[int, int]] = []
    real_draft = PILImage.Image.draft

    def recording_draft(self, mode, size):
        result = real_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(PILImage.Image, "draft", recording_draft)
    incoming = images.inspect_upload(FileStorage(io.BytesIO(buffer.getvalue()), "big.jpg"))
    incoming.close()

    assert decoded_sizes[0] == (2000, 1500)  # decoded at half scale, not 4000x3000


def test_presigned_urls_are_reused_while_fresh_and_renewed_before_expiry(app, monkeypatch):
    """Signing 60 URLs per page dominated the API's cost; a fresh URL is reused instead."""
    with app.app_context():
        storage = current_storage()
        if not isinstance(storage, S3Storage):
            return  # local storage serves app URLs, nothing is signed
        first = storage.url("1/abc/original.jpg")
        assert storage.url("1/abc/original.jpg") == first
        assert storage.url("1/def/original.jpg") != first

        clock = [storage._signed["1/abc/original.jpg"][1] - storage.url_expires / 4]
        monkeypatch.setattr("diary.infra.storage.time.monotonic", lambda: clock[0])
        # With less than a third of its life left, a URL is signed afresh.
        renewed = storage.url("1/abc/original.jpg")
        assert storage._signed["1/abc/original.jpg"][1] > clock[0] + storage.url_expires / 2
        assert renewed.startswith("http")


# --- animations and what one request may decode ------------------------------


def _multi_image_heif() -> bytes:
    heif = pillow_heif.from_pillow(PILImage.new("RGB", (32, 24), "red"))
    heif.add_from_pillow(PILImage.new("RGB", (32, 24), "blue"))
    buffer = io.BytesIO()
    heif.save(buffer, quality=80)
    return buffer.getvalue()


PAST_THE_CAPS = [
    # Past the real caps, in a few hundred bytes: a decoder would spend 49
    # megapixels on each 1x1 frame, and the walk through 1001 frames is cheap.
    pytest.param(
        tiny_gif((7000, 7000), [(0, 0)] * 3, comment_block(b"secret place")),
        {},
        "megapixels",
        id="gif-huge-screen-tiny-frames",
    ),
    pytest.param(
        tiny_gif((1, 1), [(0, 0), (6999, 6999), (0, 0)]),
        {},
        "megapixels",
        id="gif-frame-outside-its-screen",
    ),
    pytest.param(tiny_gif((8, 8), [(0, 0)] * 1001), {}, "1000 frames", id="gif-1001-frames"),
    # Every other format with frames, against caps made small.
    pytest.param(animation("PNG"), {"MAX_FRAMES": 2}, "2 frames", id="apng-frames"),
    pytest.param(animation("PNG"), {"MAX_ANIMATION_PIXELS": 1000}, "megapixels", id="apng-pixels"),
    pytest.param(animation("WEBP"), {"MAX_FRAMES": 2}, "2 frames", id="webp-frames"),
    pytest.param(animation("WEBP"), {"MAX_ANIMATION_PIXELS": 1000}, "megapixels", id="webp-pixels"),
    pytest.param(_multi_image_heif(), {"MAX_FRAMES": 1}, "1 frames", id="heif-images"),
]


@pytest.mark.parametrize(("data", "caps", "message"), PAST_THE_CAPS)
def test_an_animation_past_the_caps_is_refused_before_any_frame_is_decoded(
    app, client, auth, monkeypatch, decodes, data, caps, message
):
    for name, value in caps.items():
        monkeypatch.setattr(f"diary.images.{name}", value)

    response = post_photo(client, auth, data, "moving.gif")

    assert response.status_code == 413, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert message in response.get_json()["detail"]
    assert decodes == []
    assert row_counts(app)["images"] == 0 and stored_keys(app) == set()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            tiny_gif(
                (10, 10),
                [(0, 0), (5, 5), (9, 9)],
                comment_block(b"secret place") + xmp_block(b"SecretXMP"),
            ),
            id="gif",
        ),
        pytest.param(animation("PNG", pnginfo=png_text(), exif=exif_with_maker()), id="apng"),
        pytest.param(animation("WEBP", exif=exif_with_maker(), xmp=b"<x>SecretXMP</x>"), id="webp"),
    ],
)
def test_an_animation_within_the_caps_is_kept_without_its_metadata(
    app, client, auth, decodes, data
):
    response = post_photo(client, auth, data, "moving")
    decoded = len(decodes)

    assert response.status_code == 201, response.get_json()
    with app.app_context():
        from diary.extensions import db
        from diary.models import Image

        row = db.session.scalars(db.select(Image)).one()
        original = current_storage().get(row.storage_key)
        display = current_storage().get(row.display_key)
    assert not any(secret in original for secret in SECRETS)
    assert frames_of(original) == frames_of(data)  # every frame, as it was
    # The sizes are stills made from the first frame, which alone was decoded
    # (once to make them; the original was never re-encoded).
    with PILImage.open(io.BytesIO(display)) as sized, PILImage.open(io.BytesIO(data)) as first:
        assert getattr(sized, "n_frames", 1) == 1
        difference = ImageChops.difference(sized.convert("RGB"), first.convert("RGB"))
        assert max(high for _, high in difference.getextrema()) < 16  # lossy WebP
    assert decoded == 1


def test_the_photos_of_one_request_are_refused_past_its_pixel_budget_before_decoding(
    app, client, auth, decodes
):
    """Six PNG headers of 49 megapixels each: small files, 294 megapixels to decode."""
    files = [(io.BytesIO(_png_claiming(7000, 7000)), f"{n}.png") for n in range(6)]

    response = client.post("/api/v1/entries", data={"text": "six", "file": files}, headers=auth)

    assert response.status_code == 413
    assert "250 megapixels" in response.get_json()["detail"]
    assert decodes == []
    assert row_counts(app)["entries"] == 0 and stored_keys(app) == set()
