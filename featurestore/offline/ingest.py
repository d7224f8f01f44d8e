"""Ingest a feature view's Parquet source into its DuckDB table, incrementally and atomically.

Each file is tracked by path, size and mtime: new files are inserted, changed files have
their rows replaced, removed files have their rows deleted; a changed view definition
rebuilds the table. ``prepare_view`` decides and validates with reads only, so a failed
validation leaves the DuckDB file as it was; ``write_view`` then commits all of a view's
changes in one transaction, so a killed ingestion leaves the previous state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.definitions import FeatureView
from featurestore.errors import SourceError, ValidationError
from featurestore.monitoring.stats import FeatureStats, compute_statistics
from featurestore.offline.tables import (
    CREATED_TS,
    EVENT_TS,
    FILE_ID,
    SEQ,
    column_types,
    ensure_state_tables,
    retract_keys,
    retracted_table,
    table_exists,
    view_table,
)
from featurestore.outputs import atomic_write, write_text
from featurestore.storage import fetch_one, quote
from featurestore.validation import FileReport, ValidationReport, ViewReport

if TYPE_CHECKING:
    from featurestore.validation.validate import FileValidation

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class IngestResult:
    """What one view's ingestion changed."""

    view: str
    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    rows_inserted: int = 0
    rows_deleted: int = 0
    rows_skipped: int = 0  # null join key or event timestamp: never a candidate
    rows_quarantined: int = 0  # failed validation, set aside (policy "quarantine")
    validation: ViewReport | None = None  # of the files read this time
    rebuilt: bool = False
    seconds: float = 0.0
    validation_seconds: float = 0.0  # the part of ``seconds`` spent deciding and validating
    # Of the rows inserted this time (monitoring); kept with the run by lineage/runs.py.
    statistics: tuple[FeatureStats, ...] = ()
    statistics_seconds: float = 0.0  # included in ``seconds``
    run_id: int | None = None  # the ingestion run that recorded it (lineage/runs.py)

    @property
    def rows_rejected(self) -> int:
        """Rows set aside: quarantined, or without a join key or event time."""
        return self.rows_skipped + self.rows_quarantined

    @property
    def changed(self) -> bool:
        return bool(self.files_added or self.files_changed or self.files_removed or self.rebuilt)


@dataclass(frozen=True)
class _FileState:
    file_id: int
    size: int
    mtime: float
    checked_at: float  # epoch seconds when size, mtime and content were last read

    def maybe_changed(self, stat: tuple[int, float]) -> bool:
        # Git's "racy clean" rule: a file written within the filesystem's timestamp
        # granularity of being read can change again keeping its size and mtime, so its
        # content is compared unless its mtime is safely older than that read.
        return (self.size, self.mtime) != stat or self.mtime >= self.checked_at - _RACY_SECONDS


_RACY_SECONDS = 2.0


@dataclass
class PreparedIngest:
    """What one view's ingestion will write, decided and validated without writing anything."""

    view: FeatureView
    on_disk: dict[str, tuple[int, float]]
    stat_time: datetime
    known: dict[str, _FileState]
    rebuild: bool
    added: list[str]
    changed: list[str]
    removed: list[str]
    # Files touched but not changed: (path, stat, when read); their check time is refreshed.
    touched: list[tuple[str, tuple[int, float], datetime]]
    report: ViewReport
    checked: dict[str, FileValidation]
    seconds: float  # spent deciding and validating
    # Files that are not readable Parquet, set aside under policy
    # "quarantine": path -> why. A known one is treated as removed.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Invalid rows under policy "fail": nothing of the view may be written."""
        return not self.report.passed and self.view.on_invalid == "fail"


def ingest_view(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    registry_version: int,
    repo: Path,
    progress: Progress | None = None,
    store_dir: Path | None = None,
) -> IngestResult:
    """Bring ``view``'s DuckDB table up to date with its source files.

    New and changed files are validated first, batch by batch; with the view's policy
    "fail" one invalid row means nothing is written, with "quarantine" the invalid rows
    go to a Parquet file under ``store_dir/quarantine`` and the rest are ingested.
    """
    store_dir = store_dir or repo / ".featurestore"
    prepared = prepare_view(con, project, view, repo, progress)
    if prepared.failed:
        raise rejection(prepared, store_dir)
    return write_view(con, project, prepared, registry_version, store_dir, progress)


def prepare_view(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    repo: Path,
    progress: Progress | None = None,
    with_checks: Callable[[FeatureView], FeatureView] | None = None,
) -> PreparedIngest:
    """Decide which files changed and validate them; only reads, so a failure leaves the file as it was.

    ``with_checks`` gives the view its custom checks' functions; called only when a file needs
    validating, since it loads pandera and the repo's code.
    """
    started = time.perf_counter()
    files = view.source.files(repo)
    if not files:
        raise SourceError(
            f"source {view.source.name!r} of feature view {view.name!r}: "
            f"path {view.source.path!r} matches no Parquet files"
        )
    stat_time = datetime.now(UTC)  # before the stat: what the racy-clean rule compares with
    on_disk = {str(f.resolve()): (f.stat().st_size, f.stat().st_mtime) for f in files}
    known = _known_files(con, project, view.name)
    rebuild = not _up_to_date(con, project, view)
    touched: list[tuple[str, tuple[int, float], datetime]] = []
    changed: list[str] = []
    if rebuild:
        added, removed = sorted(on_disk), sorted(p for p in known if p not in on_disk)
    else:
        added = sorted(p for p in on_disk if p not in known)
        for p in sorted(on_disk):
            if p not in known or not known[p].maybe_changed(on_disk[p]):
                continue
            read_at = datetime.now(UTC)
            if _same_content(con, project, view.name, p, known[p], on_disk[p]):
                touched.append((p, on_disk[p], read_at))
            else:
                changed.append(p)
        removed = sorted(p for p in known if p not in on_disk)
        # Full ties are won by the later file in path order, so file ids follow path order:
        # a new file that sorts before a kept one cannot get a fitting id, and rebuilds.
        kept = [p for p in known if p not in removed]
        if added and kept and added[0] < max(kept):
            added, changed, rebuild, touched = sorted(on_disk), [], True, []

    report = ViewReport(view.name, view.on_invalid)
    unreadable: dict[str, str] = {}
    for path in added + changed:  # check every file before writing anything
        try:
            schema = read_file_schema(Path(path), view)
        except SourceError as e:  # not Parquet at all: set aside under "quarantine"
            if view.on_invalid != "quarantine":
                raise
            unreadable[path] = e.message
            report.files.append(FileReport(path, 0, 0, error=e.message))
            continue
        check_file_schema(Path(path), view, schema)  # a drifted file stops the view, whatever the policy
    if unreadable:  # set aside: never ingested, and the rows an earlier version gave are taken away
        added = [p for p in added if p not in unreadable]
        removed = sorted(removed + [p for p in changed if p in unreadable and not rebuild])
        changed = [p for p in changed if p not in unreadable]
    checked: dict[str, FileValidation] = {}
    todo = sorted(added + changed)
    if todo:  # pandera (and pandas) load only when there is something to validate
        from featurestore.validation.validate import validate_file
    checking = with_checks(view) if todo and with_checks is not None else view
    for i, path in enumerate(todo):
        if progress:
            progress(f"{view.name}: validating {Path(path).name}", i, len(todo))
        checked[path] = validate_file(checking, Path(path), keep_invalid=view.on_invalid == "quarantine")
        report.files.append(checked[path].report)
    return PreparedIngest(
        view,
        on_disk,
        stat_time,
        known,
        rebuild,
        added,
        changed,
        removed,
        touched,
        report,
        checked,
        time.perf_counter() - started,
        unreadable,
    )


def rejection(prepared: PreparedIngest, store_dir: Path) -> ValidationError:
    """The error of a view that failed validation under policy "fail"; its report is kept."""
    _keep_failed_report(store_dir, prepared.report)
    return ValidationError(
        prepared.report.summary() + " (policy 'fail': nothing was written for this view)", prepared.report
    )


def write_view(
    con: duckdb.DuckDBPyConnection,
    project: str,
    prepared: PreparedIngest,
    registry_version: int,
    store_dir: Path,
    progress: Progress | None = None,
) -> IngestResult:
    """Write what ``prepare_view`` decided: quarantine files, then one transaction."""
    started = time.perf_counter() - prepared.seconds
    p = prepared
    view, report, checked, known = p.view, p.report, p.checked, p.known
    ensure_state_tables(con, project)
    for path, stat, read_at in p.touched:
        con.execute(
            f"UPDATE {quote(project)}.offline_files SET mtime = ?, checked_at = ? "
            "WHERE view = ? AND path = ?",
            [stat[1], read_at, view.name, path],
        )
    for path in p.unreadable:
        report.quarantined_to.append(str(_quarantine_file(store_dir, view.name, Path(path))))
    if not (p.added or p.changed or p.removed or p.rebuild):
        return IngestResult(
            view.name, validation=report if p.unreadable else None, seconds=time.perf_counter() - started
        )
    quarantined = 0
    for path, result in checked.items():
        if result.quarantine is not None:
            report.quarantined_to.append(str(_write_quarantine(store_dir, view.name, Path(path), result)))
            quarantined += result.report.invalid_rows

    table = view_table(project, view.name)
    todo = sorted(p.added + p.changed)
    con.execute("BEGIN TRANSACTION")
    try:
        deleted = 0
        key_names = [k.name for k in view.join_keys]
        if p.rebuild:
            if view.online:  # only online views have Redis values to correct
                _retract_before_rebuild(con, project, view)
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(_create_table_sql(table, view))
            con.execute(f"DELETE FROM {quote(project)}.offline_files WHERE view = ?", [view.name])
            known = {}
        for path in [] if p.rebuild else p.changed + p.removed:
            if view.online:
                retract_keys(con, project, view.name, key_names, f"{FILE_ID} = {int(known[path].file_id)}")
            row = fetch_one(con, f"DELETE FROM {table} WHERE {FILE_ID} = ?", [known[path].file_id])
            deleted += int(row[0]) if row else 0
            con.execute(
                f"DELETE FROM {quote(project)}.offline_files WHERE view = ? AND path = ?", [view.name, path]
            )
        # A changed file keeps its id (its place in path order); new files sort after all others.
        ids = {path: known[path].file_id for path in p.changed}
        first_new = max((s.file_id for s in known.values()), default=0) + 1
        ids.update({path: first_new + i for i, path in enumerate(p.added)})
        inserted = skipped = 0
        for i, path in enumerate(todo):
            if progress:
                progress(f"{view.name}: {Path(path).name}", i, len(todo))
            n, s = _insert_file(
                con,
                project,
                table,
                view,
                path,
                ids[path],
                p.on_disk[path],
                p.stat_time,
                checked[path].invalid_rows,
                checked[path].bad_strings,
            )
            inserted += n
            skipped += s
        con.execute(
            f"INSERT OR REPLACE INTO {quote(project)}.offline_views VALUES (?, ?, ?, ?)",
            [view.name, view.fingerprint, registry_version, datetime.now(UTC)],
        )
        _record_validation(con, project, report)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    # After the commit: DuckDB scans committed rows ~2x faster than a transaction's own.
    stats, stats_seconds = _statistics(con, table, view, [ids[f] for f in todo], inserted)
    if progress:
        progress(view.name, len(todo), len(todo))
    return IngestResult(
        view.name,
        files_added=len(p.added),
        files_changed=len(p.changed),
        files_removed=len(p.removed),
        rows_inserted=inserted,
        rows_deleted=deleted,
        rows_skipped=skipped - quarantined,
        rows_quarantined=quarantined,
        validation=report,
        rebuilt=p.rebuild,
        seconds=time.perf_counter() - started,
        validation_seconds=p.seconds,
        statistics=stats,
        statistics_seconds=stats_seconds,
    )


def _retract_before_rebuild(con: duckdb.DuckDBPyConnection, project: str, view: FeatureView) -> None:
    """A rebuilt view's old keys are all retracted, when they are still its keys."""
    keys = [k.name for k in view.join_keys]
    old = _key_types(con, project, "offline_" + view.name, keys)
    pending = _key_types(con, project, "retracted_" + view.name, keys)
    if pending is not None and pending != old:  # the keys changed: pending ones are another layout
        con.execute(f"DROP TABLE {retracted_table(project, view.name)}")
    if old is not None:
        retract_keys(con, project, view.name, keys, "true")


def _key_types(con: duckdb.DuckDBPyConnection, project: str, table: str, keys: list[str]) -> list[str] | None:
    """The types of ``keys`` in the table, or None if it does not exist or lacks one of them."""
    types = column_types(con, project, table)
    return [types[k] for k in keys] if all(k in types for k in keys) else None


def ingested_fingerprint(con: duckdb.DuckDBPyConnection, project: str, view: str) -> str | None:
    """The view fingerprint the table was built for, or None if never ingested."""
    if not table_exists(con, project, "offline_views"):
        return None
    row = fetch_one(
        con, f"SELECT view_fingerprint FROM {quote(project)}.offline_views WHERE view = ?", [view]
    )
    return None if row is None else str(row[0])


def _up_to_date(con: duckdb.DuckDBPyConnection, project: str, view: FeatureView) -> bool:
    return ingested_fingerprint(con, project, view.name) == view.fingerprint and table_exists(
        con, project, "offline_" + view.name
    )


def _known_files(con: duckdb.DuckDBPyConnection, project: str, view: str) -> dict[str, _FileState]:
    if not table_exists(con, project, "offline_files"):
        return {}
    rows = con.execute(
        f"SELECT path, file_id, size, mtime, epoch(checked_at) FROM {quote(project)}.offline_files "
        "WHERE view = ?",
        [view],
    ).fetchall()
    return {path: _FileState(fid, size, mtime, at) for path, fid, size, mtime, at in rows}


def _same_content(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: str,
    path: str,
    known: _FileState,
    stat: tuple[int, float],
) -> bool:
    """A file touched but not changed (a re-copy, a checkout) is not re-ingested."""
    if known.size != stat[0]:
        return False
    row = fetch_one(
        con,
        f"SELECT fingerprint FROM {quote(project)}.offline_files WHERE view = ? AND path = ?",
        [view, path],
    )
    return row is not None and row[0] == file_fingerprint(Path(path))


def _create_table_sql(table: str, view: FeatureView) -> str:
    columns = [f"{quote(k.name)} {k.dtype.duckdb} NOT NULL" for k in view.join_keys]
    columns += [
        f"{EVENT_TS} TIMESTAMPTZ NOT NULL",
        f"{CREATED_TS} TIMESTAMPTZ",
        f"{SEQ} BIGINT NOT NULL",
        f"{FILE_ID} INTEGER NOT NULL",
    ]
    columns += [f"{quote(f.name)} {f.dtype.duckdb}" for f in view.features]
    return f"CREATE TABLE {table} ({', '.join(columns)})"


def _insert_file(
    con: duckdb.DuckDBPyConnection,
    project: str,
    table: str,
    view: FeatureView,
    path: str,
    file_id: int,
    stat: tuple[int, float],
    checked_at: datetime,
    invalid_rows: np.ndarray,
    bad_strings: bool = False,
) -> tuple[int, int]:
    src = view.source
    keys = [quote(k.name) for k in view.join_keys]
    created = (
        f"CAST({quote(src.created_timestamp_field)} AS TIMESTAMPTZ)"
        if src.created_timestamp_field
        else "NULL"
    )
    select = ", ".join(
        [f"CAST({quote(k.name)} AS {k.dtype.duckdb})" for k in view.join_keys]
        + [
            f"CAST({quote(src.timestamp_field)} AS TIMESTAMPTZ)",
            created,
            "(CAST(? AS BIGINT) << 32) | file_row_number",
            "?",
        ]
        + [f"CAST({quote(f.name)} AS {f.dtype.duckdb})" for f in view.features]
    )
    valid = " AND ".join([f"{k} IS NOT NULL" for k in keys] + [f"{quote(src.timestamp_field)} IS NOT NULL"])
    scan = "read_parquet(?, file_row_number = true)"
    scan_params: list[object] = [path]
    if bad_strings:  # DuckDB reads no file holding a string that is not UTF-8: hand it a cleaned copy
        from featurestore.validation.schema import columns_read  # loaded by the validation already
        from featurestore.validation.validate import clean_table

        clean = clean_table(Path(path), columns_read(view))
        rows = pa.array(np.arange(clean.num_rows, dtype=np.int64))
        con.register("__fs_clean", clean.append_column("file_row_number", rows))
        scan, scan_params = "__fs_clean", []
    total_row = fetch_one(con, f"SELECT count(*) FROM {scan}", scan_params)
    total = int(total_row[0]) if total_row else 0
    if len(invalid_rows):  # quarantined rows stay out
        con.register("__fs_invalid", pa.table({"row": pa.array(invalid_rows, pa.int64())}))
        valid += " AND file_row_number NOT IN (SELECT row FROM __fs_invalid)"
    try:
        con.execute(
            f"INSERT INTO {table} SELECT {select} FROM {scan} WHERE {valid}", [file_id, file_id, *scan_params]
        )
    finally:
        if len(invalid_rows):
            con.unregister("__fs_invalid")
        if bad_strings:
            con.unregister("__fs_clean")
    stats = fetch_one(
        con, f"SELECT count(*), min({EVENT_TS}), max({EVENT_TS}) FROM {table} WHERE {FILE_ID} = ?", [file_id]
    )
    assert stats is not None
    rows, min_ts, max_ts = stats
    con.execute(
        f"INSERT INTO {quote(project)}.offline_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            view.name,
            file_id,
            path,
            stat[0],
            stat[1],
            file_fingerprint(Path(path)),
            rows,
            min_ts,
            max_ts,
            datetime.now(UTC),
            checked_at,
        ],
    )
    return int(rows), total - int(rows)


def _statistics(
    con: duckdb.DuckDBPyConnection, table: str, view: FeatureView, file_ids: list[int], inserted: int
) -> tuple[tuple[FeatureStats, ...], float]:
    """The statistics of the rows just inserted from ``file_ids``, and what they cost (seconds)."""
    if not inserted:  # nothing to describe: no statistics rather than empty ones
        return (), 0.0
    started = time.perf_counter()
    rows = f"SELECT * FROM {table} WHERE {FILE_ID} IN ({', '.join(str(int(i)) for i in file_ids)})"
    stats = compute_statistics(con, rows, [f.name for f in view.features])
    return tuple(stats), time.perf_counter() - started


def _write_quarantine(store_dir: Path, view: str, path: Path, result: FileValidation) -> Path:
    """The file's invalid rows with their reasons, written atomically (rename)."""
    assert result.quarantine is not None
    target = store_dir / "quarantine" / view / f"{path.stem}-{file_fingerprint(path)[:12]}.parquet"
    table = result.quarantine.append_column(
        "__source_file", pa.array([str(path)] * result.quarantine.num_rows)
    )
    with atomic_write(target) as partial:
        pq.write_table(table, partial)
    return target


def _quarantine_file(store_dir: Path, view: str, path: Path) -> Path:
    """A copy of a file that is not readable Parquet, beside the quarantined rows (atomic)."""
    target = store_dir / "quarantine" / view / f"{path.name}-{file_fingerprint(path)[:12]}.unreadable"
    if not target.exists():
        with atomic_write(target) as partial:
            shutil.copyfile(path, partial)
    return target


def _keep_failed_report(store_dir: Path, report: ViewReport) -> None:
    """A failed validation writes nothing to DuckDB; its report is kept beside the store."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = store_dir / "validation" / f"{report.view}-{stamp}-failed.json"
    write_text(target, ValidationReport([report]).to_json())


def _record_validation(con: duckdb.DuckDBPyConnection, project: str, report: ViewReport) -> None:
    """Counts per check of each file ingested, kept with the ingestion (lineage, monitoring)."""
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {quote(project)}.validation_results (
            view VARCHAR NOT NULL, path VARCHAR NOT NULL, checked_at TIMESTAMPTZ NOT NULL,
            policy VARCHAR NOT NULL, rows BIGINT NOT NULL, invalid_rows BIGINT NOT NULL,
            failures JSON NOT NULL)"""
    )
    now = datetime.now(UTC)
    for f in report.files:
        failures = json.dumps(
            [{"column": c.column, "check": c.check, "failing_rows": c.failing_rows} for c in f.failures]
        )
        con.execute(
            f"INSERT INTO {quote(project)}.validation_results VALUES (?, ?, ?, ?, ?, ?, ?)",
            [report.view, f.path, now, report.policy, f.rows, f.invalid_rows, failures],
        )


def file_fingerprint(path: Path) -> str:
    """A content hash of a file (BLAKE2b, streamed), for lineage and change detection."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_file_schema(path: Path, view: FeatureView) -> pa.Schema:
    """The file's Parquet schema; SourceError if it is not readable Parquet."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise SourceError(
            f"feature view {view.name!r}: {path} is not a readable Parquet file ({' '.join(str(e).split())})"
        ) from None


def check_file_schema(path: Path, view: FeatureView, schema: pa.Schema | None = None) -> None:
    """A column dropped or retyped in a file is caught before anything is written."""
    schema = read_file_schema(path, view) if schema is None else schema
    src = view.source
    expected: list[tuple[str, str, Callable[[pa.DataType], bool]]] = [
        (k.name, k.dtype.name, k.dtype.accepts) for k in view.join_keys
    ]
    expected += [(src.timestamp_field, "Timestamp", pa.types.is_timestamp)]
    if src.created_timestamp_field:
        expected += [(src.created_timestamp_field, "Timestamp", pa.types.is_timestamp)]
    expected += [(f.name, f.dtype.name, f.dtype.accepts) for f in view.features]
    for name, dtype, accepts in expected:
        idx = schema.get_field_index(name)
        if idx < 0:
            raise SourceError(
                f"feature view {view.name!r}: {path} has no column {name!r} (declared {dtype}); "
                f"the file has {', '.join(schema.names)}"
            )
        if not accepts(schema.field(idx).type):
            raise SourceError(
                f"feature view {view.name!r}: column {name!r} of {path} is {schema.field(idx).type}, "
                f"declared {dtype}"
            )
