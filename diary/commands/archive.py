"""Moving a diary in and out: export to a ZIP, import an export, Day One or the original service.

flask --app diary export --user EMAIL --out FILE
flask --app diary import --user EMAIL FILE [--source-bucket B --source-endpoint URL]
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask.cli import with_appcontext

from .. import archive
from ..errors import InvalidInput
from ..infra.storage import StorageUnavailable
from . import user_or_exit


@click.command("export")
@with_appcontext
@click.option("--user", "email", required=True, help="Whose diary to export (email).")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="ZIP file."
)
def export_command(email: str, out: Path) -> None:
    """Write a user's diary (entries.json, Markdown, photos) to one ZIP file."""
    user = user_or_exit(email)
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
    user = user_or_exit(email)
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


COMMANDS = (export_command, import_command)
