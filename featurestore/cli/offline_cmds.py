"""materialize and training-set: the offline commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurestore.cli.app import BUILD, RepoOption, app, console, err_console, open_store
from featurestore.cli.output import data_table, duration, print_json
from featurestore.cli.progress import progress_bar
from featurestore.errors import InvalidRequestError, RunInProgressError, ViewsFailedError

if TYPE_CHECKING:
    from featurestore.offline.feature_log import FeatureLog
    from featurestore.offline.write import IngestResult
    from featurestore.online.materialize import MaterializeResult
    from featurestore.store import FeatureStore


def split_names(values: list[str] | None) -> list[str] | None:
    """``--views a,b --views c`` -> [a, b, c]."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


FeaturesOption = Annotated[
    list[str] | None,
    typer.Option("--features", "-f", help="view:feature references (repeat or comma-separate)."),
]
ServiceOption = Annotated[str | None, typer.Option("--service", "-s", help="A feature service name.")]


def features_or_service(features: list[str] | None, service: str | None) -> list[str] | str:
    """What ``--features`` / ``--service`` ask for: exactly one of the two."""
    refs = split_names(features)
    if bool(refs) == bool(service):
        raise InvalidRequestError("give either --features or --service (exactly one)")
    return refs or service or ""


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; naive times are UTC, as everywhere in the store."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-11-23T12:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command(rich_help_panel=BUILD)
def materialize(
    repo: RepoOption = Path("."),
    offline: Annotated[bool, typer.Option("--offline", help="Only ingest sources into DuckDB.")] = False,
    views: Annotated[
        list[str] | None, typer.Option("--views", help="Only these views (repeat or comma-separate).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="Earliest event time to materialize (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option(help="Event times before this (ISO 8601; default now).")] = None,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="From each view's watermark (and late files) to --end.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's counts as JSON.")] = False,
    if_idle: Annotated[
        bool,
        typer.Option("--if-idle", help="If another ingestion or materialization runs, say so and exit 0."),
    ] = False,
) -> None:
    """Ingest sources into DuckDB, then write the newest value per entity into Redis.

    One run at a time per store: a second one waits for the first (or, with --if-idle, skips).
    """
    store = open_store(repo)
    begin, finish = parse_time(start, "--start"), parse_time(end, "--end")
    if incremental and begin is not None:
        raise InvalidRequestError("--incremental starts at each view's watermark: drop --start")
    started = time.perf_counter()
    names = split_names(views)

    def waiting(line: str) -> None:
        err_console.print(line, markup=False)

    failed: ViewsFailedError | None = None  # printed after what the other views did
    try:
        if offline:
            _ingest(store, names, if_idle, waiting, started, as_json)
            return
        with progress_bar() as report:
            result = store.materialize(
                begin, finish, names, report, incremental, if_idle, waiting  # type: ignore[arg-type]
            )
    except RunInProgressError as e:  # only with --if-idle: skipping is this run's success
        console.print(e.message, markup=False)
        return
    except ViewsFailedError as e:
        if offline:  # _ingest printed what it did for the other views
            raise
        failed, result = e, e.result
    if as_json:
        print_json({**_materialize_dict(result), "failed": failed.failed if failed else {}})
        if failed is not None:
            raise failed
        return
    table = data_table(
        "view", "from", "to", "rows read", "expired", "entities", "written", "kept newer", "seconds"
    )
    for v in result.views:
        table.add_row(
            v.view,
            v.start.isoformat(timespec="seconds") if v.start else "beginning",
            v.end.isoformat(timespec="seconds"),
            f"{v.rows_read:,}",
            f"{v.expired:,}",
            f"{v.entities:,}",
            f"{v.written:,}",
            f"{v.kept_newer:,}",
            f"{v.seconds:.2f}",
        )
    console.print(table)
    for v in result.views:
        if v.rewritten:
            console.print(f"{v.view}: rewritten in full ({v.rewritten})", markup=False)
    _print_quarantine(result.ingestion)
    for v in result.views:
        if v.expired and v.ttl is not None:
            console.print(
                f"{v.view}: {v.expired:,} rows skipped as expired: older than the view's TTL "
                f"({duration(v.ttl.total_seconds())}), so they would not be served."
            )
    for view, n in result.removed.items():
        console.print(f"Removed {n:,} keys of deleted view {view!r} from the online store.")
    console.print(
        f"Run {result.run_id}: {result.rows_read:,} rows read, {result.written:,} entities written "
        f"in {time.perf_counter() - started:.2f}s."
    )
    if failed is not None:
        raise failed


def _ingest(
    store: FeatureStore,
    names: list[str] | None,
    if_idle: bool,
    waiting: Callable[[str], None],
    started: float,
    as_json: bool,
) -> None:
    failed: ViewsFailedError | None = None
    try:
        with progress_bar() as report:
            results = store.ingest(names, report, if_idle, waiting)  # type: ignore[arg-type]
    except ViewsFailedError as e:
        failed, results = e, e.result
    if as_json:
        ingestion = [_ingest_dict(r) for r in results]
        print_json({"ingestion": ingestion, "failed": failed.failed if failed else {}})
    else:
        _print_ingest(results)
        _print_quarantine(results)
        changed = sum(r.changed for r in results)
        seconds = time.perf_counter() - started
        console.print(f"Offline store: {changed} of {len(results)} views changed in {seconds:.2f}s.")
    if failed is not None:
        raise failed


def _materialize_dict(result: MaterializeResult) -> dict[str, Any]:
    """A run for ``--json``: per view what was read, skipped as expired and written."""
    return {
        "run_id": result.run_id,
        "rows_read": result.rows_read,
        "expired": result.expired,
        "written": result.written,
        "views": [asdict(v) for v in result.views],  # ttl in seconds
        "removed": result.removed,
        "ingestion": [_ingest_dict(r) for r in result.ingestion],
        "seconds": result.seconds,
    }


def _ingest_dict(r: IngestResult) -> dict[str, Any]:
    return {
        "view": r.view,
        "run_id": r.run_id,
        "changed": r.changed,
        "files_added": r.files_added,
        "files_changed": r.files_changed,
        "files_removed": r.files_removed,
        "rows_inserted": r.rows_inserted,
        "rows_deleted": r.rows_deleted,
        "rows_rejected": r.rows_rejected,
        "quarantined_to": r.validation.quarantined_to if r.validation else [],
        "seconds": r.seconds,
    }


def _print_quarantine(results: list[IngestResult]) -> None:
    for r in results:
        if r.rows_quarantined and r.validation:
            where = ", ".join(p for p in r.validation.quarantined_to if not p.endswith(".unreadable"))
            console.print(f"{r.view}: {r.rows_quarantined:,} invalid rows quarantined to {where}")
        for f in r.validation.unreadable() if r.validation else []:
            console.print(f"{r.view}: set aside, not ingested: {f.error}", markup=False)


def _print_ingest(results: list[IngestResult]) -> None:
    table = data_table("view", "files +", "files ~", "files -", "rows in", "rows out", "invalid", "seconds")
    for r in results:
        table.add_row(
            r.view,
            str(r.files_added),
            str(r.files_changed),
            str(r.files_removed),
            f"{r.rows_inserted:,}",
            f"{r.rows_deleted:,}",
            f"{r.rows_rejected:,}",
            f"{r.seconds:.2f}",
        )
    console.print(table)


# A group, so that ``training-set reproduce ID`` reads as the issue and the README spell it;
# without a subcommand it builds a training set, as it always did.
training_set_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Build a point-in-time correct training set (or: training-set reproduce ID).",
)
app.add_typer(training_set_app, name="training-set", rich_help_panel=BUILD)


@training_set_app.callback()
def training_set(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Parquet file to write.")] = None,
    entities: Annotated[
        Path | None, typer.Option("--entities", "-e", help="Parquet file of entity rows.")
    ] = None,
    features: FeaturesOption = None,
    service: ServiceOption = None,
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name columns view__feature.")
    ] = False,
    timestamp_column: Annotated[
        str | None, typer.Option(help="Event time column of the entity rows.")
    ] = None,
    feature_log: Annotated[
        Path | None,
        typer.Option(
            help="A request log folder instead of --entities: one row per logged (request, entity), "
            "served features as served (log and wait)."
        ),
    ] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Build a point-in-time correct training set for the entity rows and write it as Parquet."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None or (entities is None) == (feature_log is None):
        raise InvalidRequestError(
            "training-set needs --out FILE and one of --entities FILE, --feature-log DIR"
        )
    wanted = features_or_service(features, service)
    frame: Path | FeatureLog
    if feature_log is not None:
        from featurestore.offline.feature_log import FeatureLog

        frame = FeatureLog(feature_log)
    else:
        assert entities is not None
        if entities.is_dir():
            raise InvalidRequestError(f"entity file {entities} is a directory: give a Parquet file")
        if not entities.is_file():
            raise InvalidRequestError(f"entity file {entities} does not exist")
        frame = entities
    started = time.perf_counter()
    store = open_store(repo)
    store.output_guard().check(out)  # checked here too, before the join runs
    with store.get_training_set(frame, wanted, full_feature_names, timestamp_column) as ts:
        ts.to_parquet(out)
    served = ts.manifest.get("feature_log", {}).get("served", [])
    console.print(
        f"Wrote {out} ({len(ts.manifest['features']) + len(served)} features) in "
        f"{time.perf_counter() - started:.2f}s; "
        f"training set {ts.manifest['id']}."
    )


@training_set_app.command("reproduce")
@app.command("training-set-reproduce", hidden=True)  # the earlier spelling keeps working
def training_set_reproduce(
    training_set: Annotated[str, typer.Argument(help="The training set's id (printed when it was written).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if its source files changed since.")
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Rebuild a recorded training set and verify it matches the original's fingerprint."""
    result = open_store(repo).reproduce_training_set(training_set, out, force)
    for change in result.changes:
        console.print(f"warning: {change}", markup=False)
    if result.identical:
        console.print(f"Wrote {out}: identical to training set {training_set} ({result.fingerprint}).")
        return
    console.print(
        f"Wrote {out}, but it DIFFERS from training set {training_set}: fingerprint {result.fingerprint}, "
        f"expected {result.expected}.",
        markup=False,
    )
    if not result.changes:  # nothing changed, yet not the same bytes: reproducibility is broken
        raise typer.Exit(1)
