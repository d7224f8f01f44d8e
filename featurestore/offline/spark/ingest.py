"""Ingestion on Spark: the DuckDB engine's plan and validation, then Spark writes the rows.

``prepare`` is ``offline/prepare.py``'s with Spark's validator (``validate.py``): which files
changed is decided from ``offline_files`` as on DuckDB, and a failed validation writes
nothing. ``write_view`` then has Spark write each new or changed file's valid rows into a new
warehouse folder (``warehouse.py``), outside any transaction: a folder is not live until the
DuckDB transaction that records it commits, so a killed ingestion leaves the previous state
(and at most an orphan folder, rewritten by the next run). Retractions, run records and
statistics go through the same owners as on DuckDB, over ``offline_<view>`` as a DuckDB view
of the live folders.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from featurestore.config import SparkSettings
from featurestore.definitions import FeatureView
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ, view_table
from featurestore.offline.spark.session import spark_session
from featurestore.offline.spark.validate import ROW_INDEX, read_numbered, validate_file
from featurestore.offline.spark.warehouse import (
    file_dir,
    is_local,
    live_dirs,
    local_path,
    publish,
    stored_schema,
)
from featurestore.offline.write import (
    IngestResult,
    file_ids,
    retract_before_rebuild,
    set_aside,
    statistics,
    unchanged,
    written,
)
from featurestore.profiling import FeatureStats
from featurestore.runs.validation import ValidationResultState
from featurestore.source_files import SourceFile
from featurestore.storage import fetch_one

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession

    from featurestore.offline.offline_store import OfflineStore
    from featurestore.offline.prepare import PreparedIngest, Progress, Validator
    from featurestore.validation.validate import FileValidation


def validator(settings: SparkSettings) -> Validator:
    """``prepare``'s file check, run by Spark."""

    def validate(view: FeatureView, path: str, keep_invalid: bool) -> FileValidation:
        return validate_file(spark_session(settings), view, path, keep_invalid)

    return validate


def write_view(
    store: OfflineStore,
    prepared: PreparedIngest,
    registry_version: int,
    store_dir: Path,
    settings: SparkSettings,
    progress: Progress | None = None,
) -> IngestResult:
    """Write what ``prepare`` decided: Spark writes the folders, then one DuckDB transaction."""
    started = time.perf_counter() - prepared.seconds
    con, project = store.con, store.project
    view, report, checked, p = prepared.view, prepared.report, prepared.checked, prepared.files
    known = p.known
    quarantined = set_aside(store, prepared, store_dir)
    if quarantined is None:
        return unchanged(prepared, started)
    ids = file_ids(p)
    todo = sorted(p.added + p.changed)
    lost = store.lost_folders(view.name) if p.rebuild else []
    spark = spark_session(settings)
    folders: dict[str, tuple[str, str, int, int, datetime | None, datetime | None]] = {}
    for i, path in enumerate(todo):  # the heavy part, before the transaction
        if progress:
            progress(f"{view.name}: {PurePosixPath(path).name}", i, len(todo))
        fingerprint = store.source_files.fingerprint(SourceFile(path, *p.on_disk[path]))
        target = file_dir(settings.warehouse, project, view.name, view.fingerprint, ids[path], fingerprint)
        rows, low, high = _write_file(spark, view, path, ids[path], checked[path].invalid_rows, target)
        total = checked[path].report.rows  # validation counted them
        folders[path] = (target, fingerprint, total, rows, low, high)

    con.execute("BEGIN TRANSACTION")
    try:
        deleted = 0
        key_names = [k.name for k in view.join_keys]
        if p.rebuild:
            if view.online and store.stored_kind(view.name) is not None:
                if lost:  # the keys of the surviving folders are retracted; a lost folder's are unknown
                    live = live_dirs(con, project, view.name, settings.warehouse)
                    publish(con, project, view, [d for d in live if d not in lost])
                retract_before_rebuild(store, view)
            store.forget_files(view.name)
        for path in [] if p.rebuild else p.changed + p.removed:
            file_id = int(known[path].file_id)
            if view.online:
                store.retract_keys(view.name, key_names, f"{FILE_ID} = {file_id}")
            deleted += _rows(store, view.name, file_id)
            store.forget_files(view.name, path)
        inserted = skipped = 0
        for path in todo:
            _, fingerprint, total, rows, low, high = folders[path]
            store.record_file(
                view.name, ids[path], path, p.on_disk[path], fingerprint, rows, (low, high), p.stat_time
            )
            inserted += rows
            skipped += total - rows
        store.record_view(view, registry_version)
        # The view's rows are now the recorded folders (DuckDB reads them for statistics,
        # drift and retractions; a remote warehouse has no DuckDB view, see README).
        store.drop_view_table(view.name)
        if is_local(settings.warehouse):
            publish(con, project, view, live_dirs(con, project, view.name, settings.warehouse))
        ValidationResultState(con, project).record(report)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    stats: tuple[FeatureStats, ...] = ()
    stats_seconds = 0.0
    if is_local(settings.warehouse):
        stats, stats_seconds = statistics(
            store, view_table(project, view.name), view, [ids[f] for f in todo], inserted
        )
    if progress:
        progress(view.name, len(todo), len(todo))
    return written(prepared, started, (inserted, deleted, skipped, quarantined), (stats, stats_seconds))


def _write_file(
    spark: SparkSession, view: FeatureView, path: str, file_id: int, invalid_rows: np.ndarray, target: str
) -> tuple[int, datetime | None, datetime | None]:
    """Write the file's valid rows to ``target`` as the view's stored columns; (rows written,
    their first and last event time). Rows without a key or event time are
    skipped, as the DuckDB engine skips them; quarantined rows stay out."""
    from pyspark.sql import functions as F

    src = view.source
    names = [k.name for k in view.join_keys] + [src.timestamp_field]
    names += [src.created_timestamp_field] if src.created_timestamp_field else []
    names += [f.name for f in view.columns]
    rows = read_numbered(spark, path, list(dict.fromkeys(names)))
    if len(invalid_rows):
        invalid = spark.createDataFrame(pa.table({ROW_INDEX: pa.array(invalid_rows, pa.int64())}))
        rows = rows.join(F.broadcast(invalid), ROW_INDEX, "left_anti")
    for name in [k.name for k in view.join_keys] + [src.timestamp_field]:
        rows = rows.where(_col(name).isNotNull())
    schema = stored_schema(view)
    created = (
        _col(src.created_timestamp_field).cast("timestamp")
        if src.created_timestamp_field
        else F.lit(None).cast("timestamp")
    )
    columns = [
        _col(k.name).cast(_spark_type(schema.field(k.name).type)).alias(k.name) for k in view.join_keys
    ]
    columns += [
        _col(src.timestamp_field).cast("timestamp").alias(EVENT_TS),
        created.alias(CREATED_TS),
        ((F.lit(file_id).cast("long") * F.lit(1 << 32)) + F.col(ROW_INDEX)).alias(SEQ),
        F.lit(file_id).cast("int").alias(FILE_ID),
    ]
    columns += [
        _col(f.name).cast(_spark_type(schema.field(f.name).type)).alias(f.name) for f in view.columns
    ]
    # Row order kept within the file: the DuckDB engine's table is in file order too.
    rows.select(*columns).sortWithinPartitions(SEQ).write.mode("overwrite").parquet(target)
    if is_local(target):  # DuckDB reads the footers' statistics in milliseconds; a Spark job takes a second
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            found = con.execute(
                f"SELECT count(*), min({EVENT_TS}), max({EVENT_TS}) FROM read_parquet(?)",
                [local_path(target) + "/*.parquet"],
            ).fetchone()
    else:
        found = spark.read.parquet(target).agg(F.count(F.lit(1)), F.min(EVENT_TS), F.max(EVENT_TS)).first()
    assert found is not None
    return int(found[0]), found[1], found[2]


def _rows(store: OfflineStore, view: str, file_id: int | None) -> int:
    """Rows of the view (of one file) in the current live folders: what a change takes away."""
    if store.stored_kind(view) is None:
        return 0
    where = "" if file_id is None else f" WHERE {FILE_ID} = {int(file_id)}"
    row = fetch_one(store.con, f"SELECT count(*) FROM {view_table(store.project, view)}{where}")
    return int(row[0]) if row else 0


def _col(name: str) -> Column:
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _spark_type(arrow: pa.DataType) -> str:
    """The Spark SQL type of a stored column's Arrow type (features and keys)."""
    if pa.types.is_list(arrow):
        return f"array<{_spark_type(arrow.value_type)}>"
    names = {
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.string(): "string",
        pa.bool_(): "boolean",
        pa.binary(): "binary",
        pa.timestamp("us", tz="UTC"): "timestamp",
    }
    return names[arrow]
