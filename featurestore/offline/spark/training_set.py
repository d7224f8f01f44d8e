"""SparkTrainingSet: the training set of ``[offline] engine = "spark"``, with TrainingSet's outputs.

The rows are those of DuckDB's engine, in input order, with the same column names and Arrow
types (``to_arrow``). ``to_parquet`` writes a dataset folder with Spark's executors (the
driver never holds the rows): ``part-00000.parquet``, ``part-00001.parquet``, ... in input
order, so reading the folder (pyarrow sorts its files by name) gives the entity rows in
order, and ``_common_metadata`` holding the schema with the manifest under MANIFEST_KEY. In
the part files, columns have Spark's types, which are the declared ones for features; an
entity column of a type Spark lacks (nanoseconds, unsigned) is written as Spark holds it.
``to_arrow`` and ``to_pandas`` bring every row to the driver, so they refuse above
``max_rows`` rows (InvalidRequestError naming ``to_parquet``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.config import Config
from featurestore.definitions.types import pandas_frame
from featurestore.errors import InvalidRequestError, NotAppliedError
from featurestore.offline.entities import ROW
from featurestore.offline.spark.aggregations import spark_error
from featurestore.offline.spark.entities import SparkEntities, column, spark_entities
from featurestore.offline.spark.pit import ViewRows, point_in_time
from featurestore.offline.spark.session import spark_session
from featurestore.offline.spark.warehouse import is_local, is_lost, live_dirs, local_path, stored_schema
from featurestore.offline.training_set import (
    MANIFEST_KEY,
    Recorder,
    check_keys,
    make_manifest,
    output_columns,
)
from featurestore.outputs import DATASET_MARK, OutputGuard, atomic_folder
from featurestore.registry import ViewRequest

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

MAX_ROWS = 10_000_000  # to_arrow / to_pandas: more rows than this belong in to_parquet
ROWS_PER_PART = 1_000_000  # rows of a part file when Spark coalesces small partitions (~50 MB)
_COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"


class SparkTrainingSet:
    """The result of ``get_training_set`` on the Spark engine; nothing runs until an output
    method is called. Holds no connection to the store: ``close`` is there for ``with``."""

    def __init__(
        self,
        result: Callable[[], DataFrame],
        schema: pa.Schema,
        entities: SparkEntities,
        manifest: dict[str, Any],
        guard: OutputGuard,
        scratch: Path | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.schema = schema
        self.manifest = manifest
        self._result = result
        self._dataframe: DataFrame | None = None
        self._entities = entities
        self._guard = guard
        self._scratch = scratch
        self._recorder = recorder

    @property
    def dataframe(self) -> DataFrame:
        """The rows as a Spark DataFrame, for Spark users: collected or written, in input order.
        For an entity frame given as a Spark DataFrame, the first use runs a job over it."""
        if self._dataframe is None:
            self._dataframe = self._result()
        return self._dataframe

    def to_arrow(self, max_rows: int = MAX_ROWS) -> pa.Table:
        """The whole training set in the driver's memory; refused above ``max_rows`` rows."""
        rows = self._entities.count()  # one output row per entity row
        if rows > max_rows:
            raise InvalidRequestError(
                f"the training set has {rows} rows, more than max_rows={max_rows} to hold in memory: "
                "write it with to_parquet(folder), or pass a larger max_rows"
            )
        with _job_errors():
            table = self.dataframe.toArrow()
        return _conform(table, self.schema)

    def to_pandas(self, max_rows: int = MAX_ROWS) -> pd.DataFrame:
        """``to_arrow`` as a DataFrame with Arrow-backed dtypes (nulls keep the type)."""
        return pandas_frame(self.to_arrow(max_rows))

    def to_batches(self, batch_size: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Stream the training set in input order: Spark writes it to a scratch folder of the
        (local) warehouse, read back a batch at a time and removed after."""
        if self._scratch is None:
            raise InvalidRequestError(
                "to_batches needs a Spark warehouse on this machine; write to_parquet(folder) instead"
            )
        folder = self._scratch / uuid.uuid4().hex
        try:
            with _job_errors():
                self.dataframe.write.parquet(str(folder))
            for part in _parts(folder):
                for batch in pq.ParquetFile(part).iter_batches(batch_size):
                    yield from _conform(pa.Table.from_batches([batch]), self.schema).to_batches()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write it as a Parquet dataset folder (see the module docstring), whole or not at all.

        A path inside the store's folder, holding a source's files or naming a folder that is
        not a dataset is refused (InvalidRequestError). With a recorder, the training set is
        registered as on DuckDB's engine (``manifest`` gains ``id``, ``rows``, fingerprints).
        """
        target = self._guard.check(path, folder=True)
        if self._recorder is None:
            return self.write(target, self.manifest)
        pending = self._recorder.before_write(self._entities.copy_to, self.manifest)
        try:
            self.write(target, pending.manifest)
        except BaseException:
            self._recorder.discard(pending)
            raise
        self.manifest = self._recorder.after_write(pending, target)
        return target

    def write(self, target: Path, manifest: dict[str, Any]) -> Path:
        """Write the folder with exactly this manifest (``reproduce`` passes the recorded one)."""
        target = self._guard.check(target, folder=True)
        with atomic_folder(target) as partial:
            with _job_errors():
                self.dataframe.write.parquet(str(partial.absolute()))
            parts = _parts(partial)
            # Spark names files part-<task>-<job uuid>-c<n>: in row order, but named anew per
            # run; numbered names make a rebuild byte-identical (``reproduce``).
            for hidden in [p for p in partial.iterdir() if p not in parts]:
                hidden.unlink()
            for i, part in enumerate(parts):
                part.rename(partial / f"part-{i:05d}.parquet")
            schema = pq.read_schema(partial / "part-00000.parquet").remove_metadata()
            text = json.dumps(manifest, sort_keys=True, default=str)
            pq.write_metadata(schema.with_metadata({MANIFEST_KEY: text}), partial / DATASET_MARK)
        return target

    def close(self) -> None:
        """Nothing to release (the session is the process's); for symmetry with TrainingSet."""

    def __enter__(self) -> SparkTrainingSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_spark_training_set(
    config: Config,
    con: duckdb.DuckDBPyConnection,
    registry_version: int,
    requests: Sequence[ViewRequest],
    entity_df: Any,
    full_feature_names: bool,
    ts_column: str,
    guard: OutputGuard,
    recorder: Recorder | None,
) -> SparkTrainingSet:
    """The Spark side of ``build_training_set``: ``con`` is the store, read for the live folders."""
    spark = spark_session(config.spark)
    entities = spark_entities(spark, entity_df, ts_column, config.duckdb_path, config.memory_limit)
    check_keys(requests, entities.frame)
    names = list(entities.frame.columns)
    outputs = output_columns(requests, names, full_feature_names)
    warehouse = config.spark.warehouse
    folders = {r.view.name: live_dirs(con, config.project, r.view.name, warehouse) for r in requests}
    views = [ViewRows(r, _view_rows(spark, r, folders[r.view.name], warehouse)) for r in requests]
    joined = point_in_time(entities.df, views, outputs)

    def result() -> DataFrame:  # when first used: in_row_order may run a job
        ordered = in_row_order(spark, joined, entities)
        return ordered.select(*[column(c) for c in names], *[column(o.name) for o in outputs])

    declared = {(r.view.name, f.name): f.dtype.arrow for r in requests for f in r.features}
    schema = pa.schema([*entities.schema, *[pa.field(o.name, declared[o.view, o.feature]) for o in outputs]])
    what = entities.frame.description
    manifest = make_manifest(con, config.project, registry_version, requests, outputs, what)
    # What a rebuild needs besides the features: how columns were named, which was the time;
    # and which warehouse folders the rows came from.
    manifest.update(
        full_feature_names=full_feature_names,
        event_timestamp_column=ts_column,
        engine="spark",
        warehouse=folders,
    )
    scratch = Path(local_path(warehouse)) / "_scratch" if is_local(warehouse) else None
    return SparkTrainingSet(result, schema, entities, manifest, guard, scratch, recorder)


def in_row_order(spark: SparkSession, joined: DataFrame, entities: SparkEntities) -> DataFrame:
    """``joined`` in input order: its partitions hold consecutive ``ROW`` ranges, sorted within.

    Not ``orderBy(ROW)``: its range partitioning samples its input first, in a job of its own
    that evaluates every view's window once more (caching the joined rows instead would hold
    all of them, and need releasing). ROW's values are known without looking: 0..rows-1 when
    the row count is known (pandas, Arrow, a SQL query, a Parquet file's row index), else
    ``monotonically_increasing_id``, whose top bits are the input partition's number (counted
    by a job over the entity frame alone). So each row's part is computed and
    ``repartitionById`` sends it there: no sampling (Spark 4.1; older Sparks sort as before).
    """
    from pyspark.sql import functions as F

    if not _has_repartition_by_id(spark):
        return joined.orderBy(ROW)
    row = F.col(ROW)
    if entities.rows is not None:
        parts = _part_count(spark, entities.rows)
        per_part = -(-entities.rows // parts)  # ceil: parts 0..parts-1
        part = F.floor(row / F.lit(per_part))
    else:  # one part per input partition of a Spark frame
        numbers = F.shiftright(row, 33)
        parts = int(entities.df.agg(F.max(numbers)).first()[0] or 0) + 1  # type: ignore[index]
        part = F.least(numbers, F.lit(parts - 1))  # later rows all last: still in order
    return joined.repartitionById(parts, part.cast("int")).sortWithinPartitions(ROW)


def _part_count(spark: SparkSession, rows: int) -> int:
    """As many parts as the shuffle would make: ``spark.sql.shuffle.partitions``, or, when adaptive
    execution coalesces small partitions (the default), about ROWS_PER_PART rows each."""
    conf = spark.conf
    parts = int(conf.get("spark.sql.shuffle.partitions") or 200)
    if conf.get("spark.sql.adaptive.enabled") == "true" and conf.get(_COALESCE) == "true":
        parts = min(parts, -(-rows // ROWS_PER_PART))
    return max(1, min(parts, rows))


def _has_repartition_by_id(spark: SparkSession) -> bool:
    from pyspark.sql import DataFrame

    major, minor = (int(n) for n in spark.version.split(".")[:2])
    return hasattr(DataFrame, "repartitionById") and (major, minor) >= (4, 1)


def _view_rows(spark: SparkSession, request: ViewRequest, folders: list[str], warehouse: str) -> DataFrame:
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = from_arrow_schema(stored_schema(request.view))
    if not folders:
        return spark.createDataFrame([], schema)
    if is_local(warehouse):
        missing = [f for f in folders if is_lost(f)]
        if missing:
            raise NotAppliedError(
                f"feature view {request.view.name!r}: its ingested rows {missing[0]} are missing from "
                f"the Spark warehouse {warehouse}; `featurestore materialize --offline` rebuilds them "
                "from the sources"
            )
    return spark.read.schema(schema).parquet(*folders)


@contextmanager
def _job_errors() -> Iterator[None]:
    """A job that failed on purpose (an integer sum past Int64) as our error; others as raised."""
    try:
        yield
    except Exception as e:
        ours = spark_error(e)
        if ours is None:
            raise
        raise ours from None


def _parts(folder: Path) -> list[Path]:
    """The data files Spark wrote, in row order (their names: part-<partition number>-..., the
    number padded to 5 digits only, so compared as a number)."""
    parts = [p for p in folder.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet"]
    return sorted(parts, key=lambda p: (int(p.name.split("-")[1]), p.name))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Spark's Arrow types to the training set's (e.g. Spark's timestamps back to the entity
    frame's unit and zone, list item names)."""
    return table.cast(schema)
