"""Upkeep commands: purge Trash, rebuild the search index, storage gc and backfill.

flask --app diary purge              (daily, from a scheduled task)
flask --app diary reindex            (rebuild search terms and tags)
flask --app diary storage gc [--delete]
flask --app diary storage backfill
"""

from __future__ import annotations

from datetime import timedelta

import click
import sqlalchemy as sa
from flask.cli import AppGroup, with_appcontext

from .. import maintenance, search
from ..extensions import db
from ..infra.storage import StorageUnavailable, current_storage
from ..models import Image

storage_cli = AppGroup("storage", help="Photo storage maintenance.")


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Remove entries in Trash for more than TRASH_DAYS days, with their photos."""
    try:
        result = maintenance.purge_trash()
    except StorageUnavailable as error:
        raise click.ClickException(
            f"{error}; the entries stay in Trash until the next run"
        ) from None
    click.echo(f"purged {result.entries} entries and {result.photos} photos")


@click.command("reindex")
@with_appcontext
def reindex_command() -> None:
    """Rebuild every entry's search terms and tags."""
    click.echo(f"reindexed {search.reindex_all()} entries")


@storage_cli.command("gc")
@click.option("--grace-hours", default=24.0, show_default=True, help="Leave younger objects alone.")
@click.option("--delete", is_flag=True, help="Delete the orphans (without it, only report).")
def gc_command(grace_hours: float, delete: bool) -> None:
    """Report objects that no photo row refers to; delete them with --delete."""
    report = maintenance.find_orphans(timedelta(hours=grace_hours))
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
                maintenance.backfill_image(image)
            except Exception as error:  # one unreadable photo must not stop the rest
                failed += 1
                click.echo(f"\nimage {image_id}: {error}", err=True)
    click.echo(f"made sizes for {len(missing) - failed} photos; {failed} failed")
    if failed:
        raise SystemExit(1)


COMMANDS = (purge_command, reindex_command, storage_cli)
