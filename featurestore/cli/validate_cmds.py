"""validate: check sources against their declarations without writing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from featurestore.cli.app import RepoOption, app, console, open_store
from featurestore.cli.offline_cmds import split_names
from featurestore.cli.progress import progress_bar
from featurestore.validation import ValidationReport

# Values shown for a row that fails a view-level check (its join keys and event time first).
VIEW_CHECK_VALUES = 3


@app.command()
def validate(
    repo: RepoOption = Path("."),
    views: Annotated[
        list[str] | None, typer.Option("--views", help="Only these views (repeat or comma-separate).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate every source file against its view's schema and checks; exit 1 on failures."""
    store = open_store(repo)
    with progress_bar() as report:
        result = store.validate(split_names(views), progress=report)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print_report(result)
    if not result.passed:
        raise typer.Exit(1)


def print_report(result: ValidationReport) -> None:
    summary = Table("view", "policy", "files", "rows", "invalid rows", "result")
    for v in result.views:
        summary.add_row(
            v.view,
            v.policy,
            str(len(v.files)),
            f"{v.rows:,}",
            f"{v.invalid_rows:,}",
            "[green]passed[/]" if v.passed else "[red]failed[/]",
        )
    console.print(summary)
    for v in result.views:
        for f in v.unreadable():
            console.print(f"{v.view}: {f.error}", markup=False)
    failures = [(v.view, path, c) for v in result.views for path, c in v.failures()]
    if not failures:
        return
    table = Table("view", "file", "column", "check", "failing rows", "examples", title="Failures")
    for view, path, c in failures:
        examples = "; ".join(
            f"row {e['row']}: {c.column}={e.get(c.column)!r}" if c.column else _leading(e) for e in c.examples
        )
        table.add_row(view, Path(path).name, c.column or "(view)", c.check, f"{c.failing_rows:,}", examples)
    console.print(table)


def _leading(example: dict[str, Any]) -> str:
    """A row failing a view-level check, by its first values: join keys and event time come first."""
    values = [f"{k}={v!r}" for k, v in example.items() if k != "row"][:VIEW_CHECK_VALUES]
    return f"row {example['row']}: " + ", ".join(values)
