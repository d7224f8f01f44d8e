"""migrate: bring the store file to this featurestore's schema version, after a backup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from featurestore.cli.app import MAINTAIN, RepoOption, app, console, open_store


@app.command(rich_help_panel=MAINTAIN)
def migrate(
    repo: RepoOption = Path("."),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change and the backup's name; change nothing.")
    ] = False,
) -> None:
    """Upgrade the store file to this featurestore's layout, after a copy of it (see README, Upgrading)."""
    from featurestore.storage import migrate as migrate_store  # DuckDB: only when run

    path = open_store(repo).config.duckdb_path
    result = migrate_store(path, dry_run)
    store = escape(str(path))
    if result is None:
        console.print(f"No store at {store} yet: nothing to migrate (the first apply makes it).")
        return
    if not result.changed:
        console.print(f"The store {store} is at schema version {result.to_version}: nothing to migrate.")
        return
    if result.from_version is None:
        verb = "Would record" if dry_run else "Recorded"
        console.print(f"{verb} schema version {result.to_version} in the new store {store}.")
        return
    verb = "Would migrate" if dry_run else "Migrated"
    versions = f"from schema version {result.from_version} to {result.to_version}"
    console.print(f"{verb} the store {store} {versions}.")
    for step in result.steps:
        console.print(f"  - {escape(step)}")
    if result.backup is not None:
        kept = "would be kept" if dry_run else "is kept"
        console.print(f"The file before {kept} at {escape(str(result.backup))}")
