"""validate: check sources against their declarations without writing anything."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurestore.cli.app import BUILD, RepoOption, app, console, open_store
from featurestore.cli.offline_cmds import split_names
from featurestore.cli.output import data_table, print_json
from featurestore.cli.progress import progress_bar

if TYPE_CHECKING:
    from featurestore.validation import ValidationReport

# Values shown for a row that fails a view-level check (its join keys and event time first).
VIEW_CHECK_VALUES = 3


@app.command(rich_help_panel=BUILD)
def validate(
    repo: RepoOption = Path("."),
    views: Annotated[
        list[str] | None, typer.Option("--views", help="Only these views (repeat or comma-separate).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate every source file against its view's schema and checks; exit 1 on failures.

    A file that cannot be read fails its view; the other files are still checked and reported.
    """
    store = open_store(repo)
    with progress_bar() as report:
        result = store.validate(split_names(views), progress=report)  # type: ignore[arg-type]
    if as_json:
        print_json(result.to_dict())
    else:
        print_report(result)
    if not result.passed:
        raise typer.Exit(1)


def print_report(result: ValidationReport) -> None:
    summary = data_table("view", "policy", "files", "rows", "invalid rows", "result")
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
    failures = [(v.view, path, c) for v in result.views for path, c in v.failures()]
    errors = [(v.view, f.path, str(f.error)) for v in result.views for f in v.unreadable()]
    if not failures and not errors:
        return
    listing = data_table("view", "file", "column", "check", "failing rows", "examples", title="Failures")
    for view, path, why in errors:
        listing.add_row(view, Path(path).name, "(file)", "unreadable", "all", why)
    for view, path, c in failures:
        examples = "; ".join(
            f"row {e['row']}: {c.column}={e.get(c.column)!r}" if c.column else _leading(e) for e in c.examples
        )
        listing.add_row(view, Path(path).name, c.column or "(view)", c.check, f"{c.failing_rows:,}", examples)
    console.print(listing, markup=False)


def _leading(example: dict[str, Any]) -> str:
    """A row failing a view-level check, by its first values: join keys and event time come first."""
    values = [f"{k}={v!r}" for k, v in example.items() if k != "row"][:VIEW_CHECK_VALUES]
    return f"row {example['row']}: " + ", ".join(values)
