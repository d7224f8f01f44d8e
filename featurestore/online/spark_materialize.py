"""Materialization's data step on the Spark engine: the newest row per entity, computed on the
cluster from the view's live warehouse folders and written to Redis by the executors.

``materialize.write_run`` keeps everything else (run records, markers, watermarks, removals,
retraction corrections) and hands each view's read-and-write here when
``[offline] engine = "spark"``. The rows are those of ``materialize.newest_rows_sql``: event
time before the end, at or after the start (or a key of a file ingested since the last run),
keys not null, TTL cut, newest by event time, then created time (nulls last), then ingestion
order. The driver never holds them: each task connects to Redis itself, encodes its rows with
DuckDB's path's ``encode_rows`` and writes them newer-wins, and yields one row of counts, which is
all the driver collects. A retried task (a lost executor) writes the same values again, which
newer-wins makes harmless.

The module lives in ``online`` (not ``offline/spark``) because it writes Redis: imports only
point down the layers. Executors must import it: local mode and a standalone worker on this
machine run this interpreter (session.py sets PYSPARK_PYTHON); elsewhere featurestore must be
installed where the executors run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.config import Config
from featurestore.definitions import FeatureView
from featurestore.errors import FeatureStoreError, OfflineEngineUnavailable, OnlineStoreUnavailable
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.spark.aggregations import spark_error
from featurestore.offline.spark.session import spark_session
from featurestore.offline.spark.warehouse import live_dirs, stored_schema
from featurestore.online.codec import ViewCodec
from featurestore.online.materialize import EXPIRED_GRACE, encode_rows
from featurestore.online.store import OnlineStore
from featurestore.online.tile_writer import Progress, TileCounts
from featurestore.secrets import mask_url

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Per entity, beside its newest row: its rows in range within TTL and past it.
_ROWS, _EXPIRED = "__rows", "__expired"
COUNTS = ("rows_read", "entities", "written", "kept_newer", "expired")
_COUNTS_SCHEMA = ", ".join(f"{name} long" for name in COUNTS)
# A task's error travels to the driver only as text (a Python traceback inside a Java one):
# the task prints ours as this tag and JSON on one line, and the driver finds it again.
_TAG = "featurestore-task-error:"
_CARRIED = re.compile(re.escape(_TAG) + r" (\{.*\})")


@dataclass(frozen=True)
class ViewCounts:
    """What the tasks of one view's write counted (materialize.ViewResult's numbers)."""

    rows_read: int = 0
    entities: int = 0
    written: int = 0
    kept_newer: int = 0
    expired: int = 0


@dataclass(frozen=True)
class SparkRange:
    """The rows one view's run reads: ``materialize._Plan`` with its late files resolved."""

    view: FeatureView
    start: datetime | None
    end: datetime
    late_files: tuple[int, ...] | None  # incremental: keys of these files are read before start too


@dataclass(frozen=True)
class _WriteTask:
    """Everything a task needs, pickled to the executors with the function that runs it."""

    redis_url: str
    project: str
    view: FeatureView
    run_id: int
    now: datetime


class SparkMaterializer:
    """The Spark engine's data step for each view of one run (the session starts on first use)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._session: SparkSession | None = None

    def write_view(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        start: datetime | None,
        end: datetime,
        late_since: datetime | None,
        run_id: int,
        now: datetime,
    ) -> ViewCounts:
        """Write the newest row per entity of ``view`` in range to Redis from the executors."""
        config = self.config
        dirs = live_dirs(con, config.project, view.name, config.spark.warehouse)
        if not dirs:
            return ViewCounts()
        late = None
        if start is not None and late_since is not None:
            late = tuple(OfflineStore(con, config.project).files_ingested_since(view.name, late_since))
        if self._session is None:
            self._session = spark_session(config.spark)
        spark = self._session
        task = _WriteTask(config.redis_url, config.project, view, run_id, now)
        if config.spark.remote is None:  # a Spark Connect session has no SparkContext here
            spark.sparkContext.setJobDescription(f"featurestore: materialize {view.name} (run {run_id})")
        try:  # reading the folders fails here already (a folder gone), the tasks' errors at collect
            newest = newest_rows(spark, dirs, SparkRange(view, start, end, late), now)
            counted = newest.mapInArrow(lambda batches: _write_partition(batches, task), _COUNTS_SCHEMA)
            rows = counted.collect()  # one row per task: the driver never sees the data
        except Exception as e:
            raise _job_error(e, view.name, config.redis_url) from None
        return ViewCounts(*(sum(int(r[name]) for r in rows) for name in COUNTS))

    def write_tiles(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        end: datetime,
        changed_since: tuple[datetime, datetime | None] | None,
        retracted: bool,
        run_id: int,
        now: datetime,
        progress: Progress | None = None,
    ) -> TileCounts:
        """An aggregation view's tiles, computed and written to Redis by the executors (spark_tiles.py)."""
        from featurestore.online.spark_tiles import write_tiles_on_spark

        config = self.config
        dirs = live_dirs(con, config.project, view.name, config.spark.warehouse)
        if self._session is None:
            self._session = spark_session(config.spark)
        spark = self._session
        if config.spark.remote is None:
            spark.sparkContext.setJobDescription(f"featurestore: materialize {view.name} (run {run_id})")
        try:
            return write_tiles_on_spark(
                spark, con, config.project, config.redis_url, dirs, view, end, changed_since, retracted,
                run_id, now, progress,
            )
        except FeatureStoreError:
            raise
        except Exception as e:
            raise _job_error(e, view.name, config.redis_url) from None


def newest_rows(spark: SparkSession, dirs: list[str], rows: SparkRange, now: datetime) -> DataFrame:
    """The newest row in range of each entity that has one, with its entity's ``__rows`` (rows in
    range within TTL) and ``__expired`` (rows in range past it; a view without TTL has none).

    One window serves both: an entity's newest row is within TTL exactly when any of its rows
    is (TTL is a cut on event time, the first sort key), so filtering the newest rows by TTL
    afterwards picks what newest_rows_sql picks after filtering first.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    view = rows.view
    keys = [k.name for k in view.join_keys]
    df = spark.read.schema(from_arrow_schema(stored_schema(view))).parquet(*dirs)
    ranged = df.where(F.col(EVENT_TS) < F.lit(rows.end))
    for key in keys:
        ranged = ranged.where(F.col(key).isNotNull())
    if rows.start is not None:
        recent = F.col(EVENT_TS) >= F.lit(rows.start)
        if rows.late_files:
            late = df.where(F.col(FILE_ID).isin(list(rows.late_files))).select(*keys).distinct()
            flagged = late.withColumn("__late", F.lit(True))
            ranged = ranged.join(flagged, on=keys, how="left").where(recent | F.col("__late").isNotNull())
        else:
            ranged = ranged.where(recent)
    order = Window.partitionBy(*keys).orderBy(
        F.col(EVENT_TS).desc(), F.col(CREATED_TS).desc_nulls_last(), F.col(SEQ).desc()
    )
    entity = Window.partitionBy(*keys)
    past = F.lit(0)
    if view.ttl is not None:
        past = F.when(F.col(EVENT_TS) < F.lit(_ttl_cut(view.ttl, now)), 1).otherwise(0)
    features = [f.name for f in view.features]
    return (
        ranged.select(
            *keys, EVENT_TS, CREATED_TS, *features,
            F.row_number().over(order).alias("__rank"),
            F.count(F.lit(1)).over(entity).alias(_ROWS),
            F.sum(past).over(entity).alias(_EXPIRED),
        )
        .where(F.col("__rank") == 1)
        .drop("__rank")
        .withColumn(_ROWS, F.col(_ROWS) - F.col(_EXPIRED))
    )


def _ttl_cut(ttl: timedelta, now: datetime) -> datetime:
    return now - ttl - EXPIRED_GRACE


def _write_partition(batches: Iterator[pa.RecordBatch], task: _WriteTask) -> Iterator[pa.RecordBatch]:
    """On an executor: write one partition's newest rows to Redis; yield its counts."""
    view = task.view
    schema = _row_schema(view)
    counts = dict.fromkeys(COUNTS, 0)
    store: OnlineStore | None = None
    with carried_errors():
        try:
            codec = ViewCodec(view)
            for batch in batches:
                counts["rows_read"] += int(pc.sum(batch.column(_ROWS)).as_py() or 0)
                counts["expired"] += int(pc.sum(batch.column(_EXPIRED)).as_py() or 0)
                served = batch.filter(pc.greater(batch.column(_ROWS), 0))
                if served.num_rows == 0:
                    continue
                # Spark's Arrow types may differ from the stored ones (large strings, ns): cast back.
                rows = pa.Table.from_batches([served.select(schema.names)]).cast(schema).combine_chunks()
                if store is None:
                    name = f"featurestore-materialize-run{task.run_id}-pid{os.getpid()}"
                    store = OnlineStore.connect(task.redis_url, task.project, client_name=name)
                for part in rows.to_batches():
                    keys, values, expire_at = encode_rows(
                        task.project, view, codec, part, task.run_id, task.now
                    )
                    written = store.write(keys, values, expire_at)
                    counts["entities"] += part.num_rows
                    counts["written"] += written
                    counts["kept_newer"] += len(keys) - written
        finally:
            if store is not None:
                store.close()
    yield pa.RecordBatch.from_pydict({name: [n] for name, n in counts.items()})


@contextmanager
def carried_errors() -> Iterator[None]:
    """In a task: a Redis error travels to the driver as text that ``_job_error`` reads back."""
    try:
        yield
    except OnlineStoreUnavailable as e:
        carried = {"message": e.message, "config_problem": e.config_problem}
        raise RuntimeError(f"{_TAG} {json.dumps(carried)}") from None


def _row_schema(view: FeatureView) -> pa.Schema:
    """The columns ``encode_rows`` reads, typed as stored (nullable: a cast never rejects a batch)."""
    stored = stored_schema(view)
    names = [k.name for k in view.join_keys] + [EVENT_TS, CREATED_TS] + [f.name for f in view.features]
    return pa.schema([pa.field(n, stored.field(n).type) for n in names])


def _job_error(error: Exception, view: str, redis_url: str) -> Exception:
    """The Spark job's failure as one of ours: a task's Redis error as the same
    OnlineStoreUnavailable the DuckDB path raises, an integer sum past Int64 as
    InvalidRequestError, anything else as OfflineEngineUnavailable."""
    overflow = spark_error(error)
    if overflow is not None:
        return overflow
    text = str(error)
    found = _CARRIED.search(text)
    if found:
        carried = json.loads(found.group(1))
        return OnlineStoreUnavailable(carried["message"], config_problem=carried["config_problem"])
    reason = _last_error_line(text).replace(redis_url, mask_url(redis_url))
    return OfflineEngineUnavailable(f"the Spark job materializing view {view!r} failed: {reason}")


def _last_error_line(text: str) -> str:
    """The line a Python traceback ends with (``KeyError: 'x'``), else the text's first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b.*", line)]
    return (errors[-1] if errors else lines[0] if lines else "no message")[:500]
