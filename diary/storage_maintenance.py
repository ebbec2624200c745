"""`flask --app diary storage gc` and `storage backfill`: keeping storage and rows in step.

gc finds objects no row refers to (an upload whose request died, a delete that
failed while S3 was unreachable) and removes them only when asked. backfill
makes the display size and thumbnail for photos stored before sizes existed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from .entries import record_size
from .extensions import db
from .images import make_sizes, variant_key
from .models import Image, utcnow
from .storage import StoredObject, current_storage

storage_cli = AppGroup("storage", help="Photo storage maintenance.")


@dataclass
class GarbageReport:
    scanned: int
    orphans: list[StoredObject]


def known_keys() -> set[str]:
    """Every key a row refers to, read in batches."""
    keys: set[str] = set()
    query = sa.select(Image.storage_key, Image.display_key, Image.thumb_key).execution_options(
        yield_per=1000
    )
    for row in db.session.execute(query):
        keys.update(key for key in row if key)
    return keys


def find_orphans(grace: timedelta) -> GarbageReport:
    """Objects with no row, older than `grace` (younger ones may belong to an upload in flight)."""
    referenced = known_keys()
    cutoff = utcnow() - grace
    scanned = 0
    orphans: list[StoredObject] = []
    for stored in current_storage().iter_objects():
        scanned += 1
        if stored.key not in referenced and stored.last_modified < cutoff:
            orphans.append(stored)
    return GarbageReport(scanned, orphans)


@storage_cli.command("gc")
@click.option("--grace-hours", default=24.0, show_default=True, help="Leave younger objects alone.")
@click.option("--delete", is_flag=True, help="Delete the orphans (without it, only report).")
def gc_command(grace_hours: float, delete: bool) -> None:
    """Report objects that no photo row refers to; delete them with --delete."""
    report = find_orphans(timedelta(hours=grace_hours))
    total = sum(orphan.size for orphan in report.orphans)
    click.echo(f"scanned {report.scanned} objects; {len(report.orphans)} orphaned ({total} bytes)")
    for orphan in report.orphans:
        click.echo(f"  {orphan.key}\t{orphan.size}\t{orphan.last_modified:%Y-%m-%d %H:%M}")
    if not delete or not report.orphans:
        if report.orphans:
            click.echo("nothing deleted; run again with --delete to remove them")
        return
    storage = current_storage()
    with click.progressbar(report.orphans, label="deleting") as orphans:
        batch: list[str] = []
        for orphan in orphans:
            batch.append(orphan.key)
            if len(batch) == 1000:
                storage.delete(batch)
                batch = []
        storage.delete(batch)
    click.echo(f"deleted {len(report.orphans)} objects")


def backfill_image(image: Image) -> None:
    """Make and store the missing sizes of one photo, then record them."""
    storage = current_storage()
    prefix = image.storage_key.rsplit("/", 1)[0] + "/"
    original = io.BytesIO(storage.get(image.storage_key))
    sizes = make_sizes(original, "file")
    stored: list[str] = []
    try:
        for variant in sizes:
            key = variant_key(prefix, variant)
            storage.put(key, variant.stream, content_type=variant.content_type)
            stored.append(key)
            record_size(image, variant.name, key, variant.width, variant.height, variant.byte_size)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        storage.delete(stored)
        raise
    finally:
        for variant in sizes:
            variant.stream.close()


@storage_cli.command("backfill")
def backfill_command() -> None:
    """Make display sizes and thumbnails for photos stored before they existed."""
    missing = list(
        db.session.scalars(
            sa.select(Image.id).where(
                sa.or_(Image.thumb_key.is_(None), Image.display_key.is_(None))
            )
        )
    )
    failed = 0
    with click.progressbar(missing, label="making sizes") as ids:
        for image_id in ids:
            image = db.session.get(Image, image_id)
            try:
                backfill_image(image)
            except Exception as error:  # one unreadable photo must not stop the rest
                failed += 1
                click.echo(f"\nimage {image_id}: {error}", err=True)
    click.echo(f"made sizes for {len(missing) - failed} photos; {failed} failed")
    if failed:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(storage_cli)
