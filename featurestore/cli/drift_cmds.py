"""drift: compare each feature's distribution between a baseline and the current data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from featurestore.cli.app import MONITOR, RepoOption, app, console, err_console, open_store
from featurestore.cli.output import data_table

if TYPE_CHECKING:
    from featurestore.monitoring.drift import DriftReport


@app.command("drift", rich_help_panel=MONITOR)
def drift_cmd(
    target: Annotated[str, typer.Argument(help="A feature view or feature service.")],
    baseline: Annotated[
        str,
        typer.Option("--baseline", "-b", help="A training set id, an ingestion run (ingest-N) or 'latest'."),
    ],
    current: Annotated[
        str,
        typer.Option(
            "--current",
            "-c",
            help="An ingestion run (ingest-N), 'latest' (each view's last run that ingested rows) "
            "or a training set id.",
        ),
    ] = "latest",
    psi_threshold: Annotated[
        float | None,
        typer.Option(
            "--psi-threshold",
            help="Drifted from this PSI on (default: monitoring.psi_threshold in the config, else 0.2).",
        ),
    ] = None,
    p_value_threshold: Annotated[
        float | None,
        typer.Option(
            "--p-value-threshold",
            help="...and below this p-value (default: monitoring.p_value_threshold, else 0.05).",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report with a chart per drift.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON, not a table.")] = False,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when a feature drifted (to gate CI).")
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Compare every feature of a view or service between a baseline and the current data (PSI and a test)."""
    store = open_store(repo)
    if html is not None:  # before the work: never over the store or a source
        store.output_guard().check(html)
    report = store.drift(target, baseline, current, psi_threshold, p_value_threshold)
    if as_json:
        typer.echo(report.to_json())
    else:
        print_report(report)
    if html is not None:
        from featurestore.monitoring.report import write_html

        written = write_html(report, html)
        # With --json, stdout is the JSON alone.
        (err_console if as_json else console).print(f"HTML report: {escape(str(written))}")
    if fail_on_drift and report.drifted:
        raise typer.Exit(1)


def print_report(report: DriftReport) -> None:
    from featurestore.monitoring.drift import NO_TEST

    t = report.thresholds
    table = data_table(
        "feature",
        "type",
        "test",
        "PSI",
        "statistic",
        "p-value",
        "rows (baseline / current)",
        "missing",
        "drifted",
        title=f"{escape(report.target)}: {escape(report.baseline)} -> {escape(report.current)}",
        caption=f"drifted: PSI >= {t.psi:g} and p-value < {t.p_value:g}, of the values or of the "
        "share of missing ones (null, NaN, inf; compared when both sides are ingestion runs)",
    )
    for f in report.features:
        b, c = f.baseline, f.current
        missing = f"{_pct(b.missing, b.count)} / {_pct(c.missing, c.count)}"
        if f.missing_psi is not None:
            missing += f" (PSI {f.missing_psi:.3f})"
        why = [w for w, flag in (("values", f.values_drifted), ("missing", f.missing_drifted)) if flag]
        compared = f.test != NO_TEST
        table.add_row(
            escape(f.feature),
            b.dtype,
            {"ks": "KS", "chi2": "chi2"}.get(f.test, "-"),
            f"{f.psi:.4f}" if compared else "-",
            f"{f.statistic:.4g}" if compared else "-",
            f"{f.p_value:.3g}" if compared else "-",
            f"{b.count:,} / {c.count:,}",
            missing,
            f"[bold red]DRIFT[/] ({', '.join(why)})" if f.drifted else "[green]no[/]",
        )
    for s in report.skipped:
        table.add_row(escape(s.feature), "", "", "", "", "", "", "", f"[dim]skipped: {escape(s.reason)}[/]")
    console.print(table)
    drifted = report.drifted
    if drifted:
        names = ", ".join(escape(f.feature) for f in drifted)
        console.print(f"[bold red]{len(drifted)} of {len(report.features)} features drifted:[/] {names}")
    else:
        console.print(f"[green]no drift[/] in {len(report.features)} features")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
