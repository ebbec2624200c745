"""Operator commands for the diary features: export, import, purge and reindex.

flask --app diary export --user EMAIL --out FILE
flask --app diary import --user EMAIL FILE [--source-bucket B --source-endpoint URL]
flask --app diary purge          (daily, from a scheduled task)
flask --app diary reindex        (rebuild search terms and tags)
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from . import accounts, archive, retention, search
from .errors import InvalidInput
from .models import User
from .storage import StorageUnavailable


def _user_or_exit(email: str) -> User:
    user = accounts.find_user(email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@click.command("export")
@with_appcontext
@click.option("--user", "email", required=True, help="Whose diary to export (email).")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="ZIP file."
)
def export_command(email: str, out: Path) -> None:
    """Write a user's diary (entries.json, Markdown, photos) to one ZIP file."""
    user = _user_or_exit(email)
    total = archive.count_live_entries(user)
    # Written beside the target and renamed, so a failed export never leaves
    # a truncated file that looks complete.
    out = out.resolve()
    partial = out.with_name(f".{out.name}.partial")
    try:
        with (
            partial.open("wb") as handle,
            click.progressbar(length=total, label="Exporting") as bar,
        ):
            for chunk in archive.export_zip(user, on_entry=lambda: bar.update(1)):
                handle.write(chunk)
        os.replace(partial, out)
    except StorageUnavailable as error:
        partial.unlink(missing_ok=True)
        raise click.ClickException(str(error)) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    click.echo(f"exported {total} entries to {out}")


@click.command("import")
@with_appcontext
@click.option("--user", "email", required=True, help="Into whose diary (email).")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source-bucket", help="The original service's bucket, to read its photos by key (Img)."
)
@click.option("--source-endpoint", help="S3 endpoint of that bucket when it is not AWS.")
@click.option("--source-region", default="ap-northeast-1", show_default=True)
def import_command(
    email: str,
    source: Path,
    source_bucket: str | None,
    source_endpoint: str | None,
    source_region: str,
) -> None:
    """Import a diary export ZIP, a Day One export (ZIP or JSON) or the original service's JSON.

    All or nothing; entries imported before are skipped, so running it twice is safe.
    """
    user = _user_or_exit(email)
    bucket = (
        archive.SourceBucket(source_bucket, source_endpoint, source_region)
        if source_bucket
        else None
    )
    try:
        with source.open("rb") as stream:
            result = archive.import_file(user, stream, source=bucket)
    except InvalidInput as error:
        raise click.ClickException(f"nothing imported: {error.message}") from None
    except StorageUnavailable as error:
        raise click.ClickException(f"nothing imported: {error}") from None
    click.echo(f"imported {result.imported} entries, skipped {result.skipped} already imported")


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Remove entries in Trash for more than TRASH_DAYS days, with their photos."""
    try:
        result = retention.purge_trash()
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


def init_app(app: Flask) -> None:
    for command in (export_command, import_command, purge_command, reindex_command):
        app.cli.add_command(command)
