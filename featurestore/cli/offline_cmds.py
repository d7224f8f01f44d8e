"""materialize and training-set: the offline commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from featurestore.cli.app import RepoOption, app, console, open_store
from featurestore.cli.progress import progress_bar
from featurestore.errors import InvalidRequestError


def split_names(values: list[str] | None) -> list[str] | None:
    """``--views a,b --views c`` -> [a, b, c]."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@app.command()
def materialize(
    repo: RepoOption = Path("."),
    offline: Annotated[bool, typer.Option("--offline", help="Only ingest sources into DuckDB.")] = False,
    views: Annotated[
        list[str] | None, typer.Option("--views", help="Only these views (repeat or comma-separate).")
    ] = None,
) -> None:
    """Ingest each view's Parquet source into DuckDB (new or changed files only)."""
    store = open_store(repo)
    started = time.perf_counter()
    with progress_bar() as report:
        results = store.ingest(split_names(views), progress=report)  # type: ignore[arg-type]
    table = Table("view", "files +", "files ~", "files -", "rows in", "rows out", "skipped", "seconds")
    for r in results:
        table.add_row(
            r.view,
            str(r.files_added),
            str(r.files_changed),
            str(r.files_removed),
            f"{r.rows_inserted:,}",
            f"{r.rows_deleted:,}",
            f"{r.rows_skipped:,}",
            f"{r.seconds:.2f}",
        )
    console.print(table)
    changed = sum(r.changed for r in results)
    console.print(
        f"Offline store: {changed} of {len(results)} views changed in {time.perf_counter() - started:.2f}s."
    )
    del offline  # the online half of materialize arrives with the online store


@app.command("training-set")
def training_set(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    entities: Annotated[Path, typer.Option("--entities", "-e", help="Parquet file of entity rows.")],
    features: Annotated[
        list[str] | None, typer.Option("--features", "-f", help="view:feature references.")
    ] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="A feature service name.")] = None,
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name columns view__feature.")
    ] = False,
    timestamp_column: Annotated[
        str | None, typer.Option(help="Event time column of the entity rows.")
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Build a point-in-time correct training set for the entity rows and write it as Parquet."""
    refs = split_names(features)
    if bool(refs) == bool(service):
        raise InvalidRequestError("give either --features or --service (exactly one)")
    if not entities.is_file():
        raise InvalidRequestError(f"entity file {entities} does not exist")
    started = time.perf_counter()
    store = open_store(repo)
    with store.get_training_set(entities, refs or service or "", full_feature_names, timestamp_column) as ts:
        ts.to_parquet(out)
    console.print(
        f"Wrote {out} ({len(ts.manifest['features'])} features) in {time.perf_counter() - started:.2f}s."
    )
