"""Write a prepared ingestion: quarantine files, then all of a view's changes in one
transaction, so a killed ingestion leaves the previous state.

The writing half of ``OfflineStore``: it alone inserts and deletes the rows of a view's
table, inside the transaction that also records the files (``offline_files``), the view
(``offline_views``) and the validation results (``runs.validation``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.fingerprints import file_fingerprint
from featurestore.offline import quarantine
from featurestore.offline.layout import EVENT_TS, FILE_ID, stored_columns, view_table
from featurestore.profiling import FeatureStats, compute_statistics
from featurestore.runs.validation import ValidationResultState
from featurestore.source_files import SourceFile, is_remote
from featurestore.storage import fetch_one, quote
from featurestore.validation import ViewReport

if TYPE_CHECKING:
    from featurestore.offline.offline_store import OfflineStore
    from featurestore.offline.plan import FilePlan
    from featurestore.offline.prepare import PreparedIngest, Progress


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
    # Of the rows inserted this time (monitoring); kept with the run by runs/statistics.py.
    statistics: tuple[FeatureStats, ...] = ()
    statistics_seconds: float = 0.0  # included in ``seconds``
    run_id: int | None = None  # the ingestion run that recorded it (runs/ingestion.py)

    @property
    def rows_rejected(self) -> int:
        """Rows set aside: quarantined, or without a join key or event time."""
        return self.rows_skipped + self.rows_quarantined

    @property
    def changed(self) -> bool:
        return bool(self.files_added or self.files_changed or self.files_removed or self.rebuilt)


def write_view(
    store: OfflineStore,
    prepared: PreparedIngest,
    registry_version: int,
    store_dir: Path,
    progress: Progress | None = None,
) -> IngestResult:
    """Write what ``prepare_view`` decided: quarantine files, then one transaction."""
    started = time.perf_counter() - prepared.seconds
    con, project = store.con, store.project
    view, report, checked, p = prepared.view, prepared.report, prepared.checked, prepared.files
    known = p.known
    quarantined = set_aside(store, prepared, store_dir)
    if quarantined is None:
        return unchanged(prepared, started)

    table = view_table(project, view.name)
    todo = sorted(p.added + p.changed)
    con.execute("BEGIN TRANSACTION")
    try:
        deleted = 0
        key_names = [k.name for k in view.join_keys]
        if p.rebuild:
            if view.online:  # only online views have Redis values to correct
                retract_before_rebuild(store, view)
            store.drop_view_table(view.name)
            con.execute(_create_table_sql(table, view))
            store.forget_files(view.name)
            known = {}
        for path in [] if p.rebuild else p.changed + p.removed:
            if view.online:
                store.retract_keys(view.name, key_names, f"{FILE_ID} = {int(known[path].file_id)}")
            row = fetch_one(con, f"DELETE FROM {table} WHERE {FILE_ID} = ?", [known[path].file_id])
            deleted += int(row[0]) if row else 0
            store.forget_files(view.name, path)
        ids = file_ids(p)
        inserted = skipped = 0
        for i, path in enumerate(todo):
            if progress:
                progress(f"{view.name}: {Path(path).name}", i, len(todo))
            n, s = _insert_file(
                store,
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
        store.record_view(view, registry_version)
        ValidationResultState(con, project).record(report)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    # After the commit: DuckDB scans committed rows ~2x faster than a transaction's own.
    stats, stats_seconds = statistics(store, table, view, [ids[f] for f in todo], inserted)
    if progress:
        progress(view.name, len(todo), len(todo))
    return written(prepared, started, (inserted, deleted, skipped, quarantined), (stats, stats_seconds))


def set_aside(store: OfflineStore, prepared: PreparedIngest, store_dir: Path) -> int | None:
    """What both engines do before writing rows: refresh touched files, set aside unreadable
    files and invalid rows. None if no row is to change; else how many rows were quarantined."""
    view, report, p = prepared.view, prepared.report, prepared.files
    store.ensure_tables()
    for path, stat, read_at in p.touched:
        store.touch_file(view.name, path, stat[1], read_at)
    files = store.source_files
    for path in prepared.unreadable:  # a remote file stays where it is: its URI is in the report
        if not is_remote(path):
            report.quarantined_to.append(str(quarantine.copy_file(store_dir, view.name, Path(path))))
    if not (p.added or p.changed or p.removed or p.rebuild):
        return None
    quarantined = 0
    for path, result in prepared.checked.items():
        if result.quarantine is not None:
            fingerprint = files.fingerprint(SourceFile(path, *p.on_disk[path]))
            target = quarantine.write_rows(store_dir, view.name, path, fingerprint, result)
            report.quarantined_to.append(str(target))
            quarantined += result.report.invalid_rows
    return quarantined


def unchanged(prepared: PreparedIngest, started: float) -> IngestResult:
    """The result of an ingestion that changed no row (unreadable files are still reported)."""
    report = prepared.report if prepared.unreadable else None
    return IngestResult(prepared.view.name, validation=report, seconds=time.perf_counter() - started)


def written(
    prepared: PreparedIngest,
    started: float,
    rows: tuple[int, int, int, int],
    statistics: tuple[tuple[FeatureStats, ...], float],
) -> IngestResult:
    """The result of an ingestion that wrote: ``rows`` are (inserted, deleted, skipped,
    quarantined), skipped counting every row of the files not inserted."""
    inserted, deleted, skipped, quarantined = rows
    p = prepared.files
    return IngestResult(
        prepared.view.name,
        files_added=len(p.added),
        files_changed=len(p.changed),
        files_removed=len(p.removed),
        rows_inserted=inserted,
        rows_deleted=deleted,
        rows_skipped=skipped - quarantined,
        rows_quarantined=quarantined,
        validation=prepared.report,
        rebuilt=p.rebuild,
        seconds=time.perf_counter() - started,
        validation_seconds=prepared.seconds,
        statistics=statistics[0],
        statistics_seconds=statistics[1],
    )


def file_ids(files: FilePlan) -> dict[str, int]:
    """The id each new or changed file is written under: a changed file keeps its id (its place
    in path order), new files sort after all others; a rebuild numbers them from 1."""
    known = {} if files.rebuild else files.known
    ids = {path: known[path].file_id for path in files.changed if path in known}
    first_new = max((s.file_id for s in known.values()), default=0) + 1
    ids.update({path: first_new + i for i, path in enumerate(files.added)})
    return ids


def retract_before_rebuild(store: OfflineStore, view: FeatureView) -> None:
    """A rebuilt view's old keys are all retracted, when they are still its keys."""
    keys = [k.name for k in view.join_keys]
    old = store.key_types("offline_" + view.name, keys)
    pending = store.key_types("retracted_" + view.name, keys)
    if pending is not None and pending != old:  # the keys changed: pending ones are another layout
        store.drop_retractions(view.name)
    if old is not None:
        store.retract_keys(view.name, keys, "true")


def _create_table_sql(table: str, view: FeatureView) -> str:
    columns = ", ".join(
        f"{quote(name)} {kind}{' NOT NULL' if needed else ''}" for name, kind, needed in stored_columns(view)
    )
    return f"CREATE TABLE {table} ({columns})"


def _insert_file(
    store: OfflineStore,
    table: str,
    view: FeatureView,
    path: str,
    file_id: int,
    stat: tuple[int, float],
    checked_at: datetime,
    invalid_rows: np.ndarray,
    bad_strings: bool = False,
) -> tuple[int, int]:
    con = store.con
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
        + [f"CAST({quote(f.name)} AS {f.dtype.duckdb})" for f in view.columns]
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
    store.record_file(
        view.name, file_id, path, stat, file_fingerprint(Path(path)), rows, (min_ts, max_ts), checked_at
    )
    return int(rows), total - int(rows)


def statistics(
    store: OfflineStore, table: str, view: FeatureView, file_ids: list[int], inserted: int
) -> tuple[tuple[FeatureStats, ...], float]:
    """The statistics of the rows just inserted from ``file_ids``, and what they cost (seconds)."""
    if not inserted:  # nothing to describe: no statistics rather than empty ones
        return (), 0.0
    started = time.perf_counter()
    rows = f"SELECT * FROM {table} WHERE {FILE_ID} IN ({', '.join(str(int(i)) for i in file_ids)})"
    stats = compute_statistics(store.con, rows, [f.name for f in view.columns])
    return tuple(stats), time.perf_counter() - started
