"""Entity frames on the Spark engine: each form users hold them in, as a Spark DataFrame.

Checked exactly as on DuckDB: the frame's columns (a zero-row slice, or a Parquet file's
footer) go through ``offline.entities.register_entities`` in a DuckDB of its own, which
gives the same errors and the Arrow types DuckDB's engine returns the entity columns as.
The rows themselves go to Spark: pandas and Arrow through Arrow (not row by row), a Parquet
file read by Spark with its row index as the input order, a Spark DataFrame in its order as
given (``monotonically_increasing_id`` before anything shuffles; a frame whose order is not
deterministic, e.g. straight after a shuffle, has none to keep), a Spark table by name.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import InvalidRequestError
from featurestore.offline.entities import (
    ENTITY_VIEW,
    ROW,
    TS,
    EntityFrame,
    query_entities,
    register_entities,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_TABLE_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*){0,2}$")


@dataclass(frozen=True)
class SparkEntities:
    """An entity frame as Spark rows: the user's columns, ``ROW`` (input order) and ``TS``."""

    df: DataFrame
    frame: EntityFrame  # the DuckDB types of the columns (key checks) and the description
    schema: pa.Schema  # the Arrow types the entity columns come back as
    rows: int | None  # known without a Spark job (in memory, a Parquet footer), else None
    _source: pa.Table | Path | None  # what the entity copy is taken from, if not Spark

    def count(self) -> int:
        """The number of entity rows (a Spark job for a Spark frame)."""
        return self.rows if self.rows is not None else self.df.count()

    def copy_to(self, path: Path) -> int:
        """Write the entity frame as given to one Parquet file (``reproduce`` reads it back)."""
        if isinstance(self._source, pa.Table):
            pq.write_table(self._source, path)
            return self._source.num_rows
        if isinstance(self._source, Path):
            shutil.copyfile(self._source, path)
            return int(pq.read_metadata(path).num_rows)
        # A Spark frame: one task writes one file in input order, beside, then moved in.
        scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}")
        try:
            ordered = self.df.repartition(1).sortWithinPartitions(ROW).drop(ROW, TS)
            ordered.write.parquet(str(scratch))
            (part,) = sorted(scratch.glob("part-*.parquet"))
            part.replace(path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return int(pq.read_metadata(path).num_rows)


def spark_entities(
    spark: SparkSession, entity_df: Any, ts_column: str, store: Path, memory_limit: str | None = None
) -> SparkEntities:
    """``entity_df`` (pandas, Arrow, Parquet path, SQL query over the store, Spark DataFrame or
    Spark table name) as Spark rows, checked as DuckDB's engine checks it."""
    if isinstance(entity_df, pa.RecordBatchReader):
        entity_df = entity_df.read_all()
    if _is_pandas(entity_df):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
        return _from_arrow(spark, table, ts_column, store, "pandas DataFrame")
    if isinstance(entity_df, pa.Table):
        return _from_arrow(spark, entity_df, ts_column, store, "Arrow table")
    if _is_spark(entity_df):
        return _from_spark(entity_df, ts_column, store, "Spark DataFrame")
    if isinstance(entity_df, (str, os.PathLike)):
        text = os.fspath(entity_df)
        if text.endswith(".parquet") or Path(text).exists():
            return _from_parquet(spark, Path(text), ts_column, store)
        if _TABLE_NAME.match(text.strip()) and not _is_select(text):
            name = text.strip()
            if not spark.catalog.tableExists(name):
                raise InvalidRequestError(
                    f"entity frame: no Spark table {name!r} (nor a Parquet file so named)"
                )
            return _from_spark(spark.table(name), ts_column, store, f"Spark table {name}")
        table = query_entities(store, text, memory_limit)
        return _from_arrow(spark, table, ts_column, store, "SQL query")
    raise InvalidRequestError(
        "entity_df must be a pandas DataFrame, a pyarrow Table, a Parquet path, a SQL query, "
        f"a Spark DataFrame or a Spark table name, got {type(entity_df).__name__}"
    )


def _from_arrow(
    spark: SparkSession, table: pa.Table, ts_column: str, store: Path, what: str
) -> SparkEntities:
    frame, schema = _check(table.slice(0, 0), ts_column, store, what)
    given = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    df = spark.createDataFrame(_sparkable(given))
    return SparkEntities(_with_ts(df, ts_column), frame, schema, table.num_rows, table)


def _from_parquet(spark: SparkSession, path: Path, ts_column: str, store: Path) -> SparkEntities:
    frame, schema = _check(path, ts_column, store, str(path))  # existence, not a folder: DuckDB's messages
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(path.absolute()))
    df = df.select("*", F.col("_metadata.row_index").alias(ROW))
    rows = pq.read_metadata(path).num_rows
    return SparkEntities(_with_ts(df, ts_column), frame, schema, rows, path)


def _from_spark(df: DataFrame, ts_column: str, store: Path, what: str) -> SparkEntities:
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(df.schema, timezone="UTC")
    frame, schema = _check(arrow.empty_table(), ts_column, store, what)
    df = df.withColumn(ROW, F.monotonically_increasing_id())
    return SparkEntities(_with_ts(df, ts_column), frame, schema, None, None)


def _check(given: pa.Table | Path, ts_column: str, store: Path, what: str) -> tuple[EntityFrame, pa.Schema]:
    """DuckDB's checks and types for the frame: only its columns are read."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        frame = register_entities(con, given, ts_column, store)
        schema = con.sql(f"SELECT * EXCLUDE ({ROW}, {TS}) FROM {ENTITY_VIEW} LIMIT 0").to_arrow_table().schema
    finally:
        con.close()
    return EntityFrame(frame.columns, what), schema.remove_metadata()


def _sparkable(table: pa.Table) -> pa.Table:
    """Arrow columns in types Spark reads: unsigned integers widened, dictionaries decoded."""
    wider = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}
    wider[pa.uint64()] = pa.int64()  # values past 2**63 fail the cast
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        kind = wider.get(kind, kind)
        columns.append(column.cast(kind) if kind != column.type else column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _with_ts(df: DataFrame, ts_column: str) -> DataFrame:
    # A naive time is UTC: the session's time zone is UTC (session.REQUIRED_CONF).
    return df.withColumn(TS, column(ts_column).cast("timestamp"))


def column(name: str) -> Column:
    """A column by its exact name (dots and spaces are not paths to Spark)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _is_select(text: str) -> bool:
    try:
        return [s.type.name for s in duckdb.extract_statements(text)] == ["SELECT"]
    except duckdb.Error:
        return False


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def _is_spark(value: Any) -> bool:
    return type(value).__module__.startswith("pyspark.sql") and type(value).__name__ == "DataFrame"

