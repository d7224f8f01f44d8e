"""gc: delete the run bookkeeping nothing needs any more."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from featurestore.cli.app import MAINTAIN, RepoOption, app, console, open_store


@app.command(rich_help_panel=MAINTAIN)
def gc(
    repo: RepoOption = Path("."),
    keep_runs: Annotated[
        int | None,
        typer.Option(min=1, help="Recent runs of each kind to keep (default: [retention] keep_runs, 10)."),
    ] = None,
) -> None:
    """Delete run records no training set, served value or recent run needs (see README, Lineage)."""
    result = open_store(repo).gc(keep_runs)
    table = Table("table", "rows deleted")
    for name, rows in result.deleted.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(
        f"Kept {len(result.kept_ingestion_runs):,} ingestion and "
        f"{len(result.kept_materialization_runs):,} materialization runs."
    )
    if result.warehouse_folders_deleted:
        console.print(
            f"Deleted {result.warehouse_folders_deleted:,} warehouse folders no view or training set reads."
        )
