"""Validate a source file on Spark: the same pandera checks as the DuckDB engine, in the tasks.

Each task runs ``validation.validate.validate_batch`` (the function DuckDB's ingestion runs on
the driver) over its Arrow batches through ``mapInArrow``, with each row's number in its
file from Spark's ``_metadata.row_index``, and sends back only the verdict: per batch its row
count and failures, per invalid row its number and reasons. The driver merges them in row
order exactly as the DuckDB engine does, so reports, row counts and quarantined rows are the
same on both engines; the valid rows never leave the executors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.validation.report import CheckFailure, FileReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from featurestore.validation.validate import FileValidation

ROW_INDEX = "__row_index"
_ROWS, _FAILURE, _INVALID = 0, 1, 2  # kinds of verdict rows
VERDICT = pa.schema(
    [
        ("kind", pa.int8()),
        ("first_row", pa.int64()),  # of the batch (failures), or the invalid row
        ("count", pa.int64()),  # rows of the batch, or rows failing the check
        ("column", pa.string()),
        ("check", pa.string()),
        ("detail", pa.string()),  # examples (JSON) of a failure, or an invalid row's reasons
    ]
)


def read_numbered(spark: SparkSession, path: str, columns: list[str]) -> DataFrame:
    """The file's ``columns`` and each row's number in the file (the DuckDB engine's file_row_number)."""
    from pyspark.sql import functions as F

    return spark.read.parquet(path).select(
        *[F.col(f"`{c}`") for c in columns], F.col("_metadata.row_index").alias(ROW_INDEX)
    )


def validate_file(
    spark: SparkSession, view: FeatureView, path: str, keep_invalid: bool = False
) -> FileValidation:
    """``validation.validate.validate_file``, run by Spark's tasks."""
    from pyspark.sql import functions as F

    from featurestore.validation.schema import columns_read
    from featurestore.validation.validate import FileValidation, merge_failures

    columns = columns_read(view)
    numbered = read_numbered(spark, path, columns)
    verdicts = numbered.mapInArrow(_judge(view), _spark_schema()).collect()
    rows = 0
    batches: list[tuple[int, CheckFailure]] = []
    invalid: dict[int, str] = {}
    for v in verdicts:
        if v["kind"] == _ROWS:
            rows += int(v["count"])
        elif v["kind"] == _FAILURE:
            failure = CheckFailure(v["column"] or None, v["check"], int(v["count"]), json.loads(v["detail"]))
            batches.append((int(v["first_row"]), failure))
        else:
            invalid[int(v["first_row"])] = v["detail"]
    failures: dict[tuple[str | None, str], CheckFailure] = {}
    for _, failure in sorted(batches, key=lambda b: b[0]):  # in row order, as one pass would meet them
        merge_failures(failures, [failure])
    bad = np.fromiter(sorted(invalid), dtype=np.int64, count=len(invalid))
    report = FileReport(path, rows, len(bad), list(failures.values()))
    quarantine = None
    if keep_invalid and len(bad):  # only the invalid rows come to the driver
        wanted = spark.createDataFrame(pa.table({ROW_INDEX: pa.array(bad, pa.int64())}))
        table = numbered.join(F.broadcast(wanted), ROW_INDEX).orderBy(ROW_INDEX).toArrow()
        table = table.select(columns).append_column(
            "__reason", pa.array([invalid[int(r)] for r in bad], pa.string())
        )
        quarantine = table.append_column("__row", pa.array(bad, pa.int64()))
    return FileValidation(report, bad, quarantine)


def _judge(view: FeatureView) -> Any:
    """The task-side function: Arrow batches in, verdict rows out (pickled to the executors)."""

    def judge(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from featurestore.validation.schema import pandera_schema
        from featurestore.validation.validate import validate_batch

        schema = pandera_schema(view)
        for batch in batches:
            if batch.num_rows == 0:
                continue
            index = batch.column(ROW_INDEX).to_numpy()
            data = pa.RecordBatch.from_arrays(
                [batch.column(i) for i in range(batch.num_columns - 1)], names=batch.schema.names[:-1]
            )
            judged = validate_batch(view, schema, data, index)
            first = int(index.min())
            out: list[dict[str, Any]] = [dict(kind=_ROWS, first_row=first, count=batch.num_rows)]
            out += [
                dict(
                    kind=_FAILURE,
                    first_row=first,
                    count=f.failing_rows,
                    column=f.column or "",
                    check=f.check,
                    detail=json.dumps(f.examples, default=str),
                )
                for f in judged.failures
            ]
            out += [
                dict(kind=_INVALID, first_row=int(r), count=1, detail=why)
                for r, why in zip(judged.invalid_rows, judged.reasons, strict=True)
            ]
            yield pa.RecordBatch.from_pylist(out, schema=VERDICT)

    return judge


def _spark_schema() -> str:
    return "kind TINYINT, first_row BIGINT, count BIGINT, `column` STRING, `check` STRING, detail STRING"
