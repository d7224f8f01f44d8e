"""Validate one Parquet file against its view, batch by batch, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.definitions import FeatureView
from featurestore.errors import SourceError
from featurestore.validation.report import MAX_EXAMPLES, CheckFailure, FileReport
from featurestore.validation.schema import columns_read, pandera_schema

BATCH_ROWS = 200_000


@dataclass
class FileValidation:
    """A file's report, plus what quarantine needs: the invalid rows and why."""

    report: FileReport
    invalid_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    quarantine: pa.Table | None = None  # the invalid rows with __reason, when asked for


def validate_file(view: FeatureView, path: Path, keep_invalid: bool = False) -> FileValidation:
    schema = pandera_schema(view)
    columns = columns_read(view)
    failures: dict[tuple[str | None, str], CheckFailure] = {}
    invalid: list[np.ndarray] = []
    kept: list[pa.Table] = []
    rows = 0
    for offset, batch in _batches(path, columns):
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        rows += len(frame)
        try:
            schema.validate(frame, lazy=True)
            continue
        except pandera.errors.SchemaErrors as e:
            cases = e.failure_cases
        reasons: dict[int, list[str]] = {}
        # pandera reports a view-level check once per column of each failing row: one failure.
        view_level = (cases["schema_context"] == "DataFrameSchema") | cases["column"].isna()
        cases = cases.assign(column=cases["column"].astype(object).where(~view_level, ""))
        for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
            col = str(column) or None
            idx = group["index"].dropna().astype(np.int64).unique()
            if len(idx) == 0:  # a check on the whole frame, not on rows: every row fails it
                idx = np.asarray(frame.index, dtype=np.int64)
            failure = failures.setdefault((col, str(check)), CheckFailure(col, str(check), 0))
            failure.failing_rows += len(idx)
            for row in idx[: MAX_EXAMPLES - len(failure.examples)]:
                failure.examples.append({"row": int(row), **_row_values(frame, int(row), view)})
            for row in idx:
                reasons.setdefault(int(row), []).append(failure.reason)
        bad = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
        invalid.append(bad)
        if keep_invalid and len(bad):
            take = batch.take(pa.array(bad - offset))
            kept.append(
                pa.Table.from_batches([take])
                .append_column("__reason", pa.array(["; ".join(reasons[int(r)]) for r in bad], pa.string()))
                .append_column("__row", pa.array(bad, pa.int64()))
            )
    all_invalid = np.concatenate(invalid) if invalid else np.zeros(0, dtype=np.int64)
    report = FileReport(str(path), rows, len(all_invalid), list(failures.values()))
    quarantine = pa.concat_tables(kept) if kept else None
    return FileValidation(report, all_invalid, quarantine)


def _batches(path: Path, columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    offset = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=columns):
            yield offset, batch
            offset += batch.num_rows
    except (OSError, pa.ArrowException) as e:  # a readable footer does not promise readable pages
        reason = " ".join(str(e).split())
        raise SourceError(
            f"{path} is not a readable Parquet file (after row {offset}: {reason})"
        ) from None


def _row_values(frame: pd.DataFrame, row: int, view: FeatureView) -> dict[str, Any]:
    values = frame.loc[row].to_dict()
    return {str(k): _plain(v) for k, v in values.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # a List feature: a list in JSON, not numpy's text
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    if value is pd.NaT:
        return None
    return value
