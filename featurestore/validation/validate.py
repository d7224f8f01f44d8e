"""Validate one Parquet file against its view, batch by batch, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.api.pandas.container
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc
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
    # Some string is not UTF-8: DuckDB refuses to read the file, even rows it would skip.
    bad_strings: bool = False


def validate_file(view: FeatureView, path: Path, keep_invalid: bool = False) -> FileValidation:
    schema = pandera_schema(view)
    columns = columns_read(view)
    failures: dict[tuple[str | None, str], CheckFailure] = {}
    invalid: list[np.ndarray] = []
    kept: list[pa.Table] = []
    rows = 0
    bad_strings = False
    for offset, batch in _batches(path, columns):
        rows += batch.num_rows
        judged = validate_batch(view, schema, batch, np.arange(offset, offset + batch.num_rows), keep_invalid)
        bad_strings = bad_strings or judged.bad_strings
        merge_failures(failures, judged.failures)
        if len(judged.invalid_rows):
            invalid.append(judged.invalid_rows)
        if judged.invalid is not None:
            kept.append(judged.invalid)
    all_invalid = np.concatenate(invalid) if invalid else np.zeros(0, dtype=np.int64)
    report = FileReport(str(path), rows, len(all_invalid), list(failures.values()))
    quarantine = pa.concat_tables(kept) if kept else None
    return FileValidation(report, all_invalid, quarantine, bad_strings)


def merge_failures(
    into: dict[tuple[str | None, str], CheckFailure], failures: list[CheckFailure]
) -> None:
    """Add a batch's failures to a file's; batches come in row order, so the first examples stay."""
    for failure in failures:
        key = (failure.column, failure.check)
        merged = into.setdefault(key, CheckFailure(failure.column, failure.check, 0))
        merged.failing_rows += failure.failing_rows
        merged.examples.extend(failure.examples[: MAX_EXAMPLES - len(merged.examples)])


@dataclass
class BatchValidation:
    """One batch's verdict: its failures (examples in row order), invalid rows and why."""

    failures: list[CheckFailure]
    invalid_rows: np.ndarray  # row numbers in the file, sorted
    reasons: list[str]  # per invalid row: its failed checks, "; "-joined
    invalid: pa.Table | None  # the invalid rows with __reason and __row, when asked for
    bad_strings: bool
    # Every failing cell: (row, column or None for a view-level check, check), in row order.
    cells: list[tuple[int, str | None, str]] = field(default_factory=list)


def validate_batch(
    view: FeatureView,
    schema: pandera.api.pandas.container.DataFrameSchema,
    batch: pa.RecordBatch,
    index: np.ndarray,
    keep_invalid: bool = False,
) -> BatchValidation:
    """Validate one batch whose rows are rows ``index`` of their file (in order).

    The unit both engines share: DuckDB's ingestion calls it batch by batch on the driver,
    Spark's in its tasks (offline/spark/validate.py), and both merge the verdicts alike.
    """
    batch, judged = _arrow_checks(view, batch, index)
    bad_strings = any(check == VALID_UTF8 for _, check in judged.failing)
    frame = batch.to_pandas()
    frame.index = pd.Index(index)
    try:
        schema.validate(frame, lazy=True)
        cases = _NO_CASES
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases
    cases = _with_arrow_cases(cases, judged)
    if cases.empty:
        return BatchValidation([], np.zeros(0, dtype=np.int64), [], None, bad_strings)
    failures: list[CheckFailure] = []
    reasons: dict[int, list[str]] = {}
    cells: list[tuple[int, str | None, str]] = []
    # pandera reports a view-level check once per column of each failing row: one failure.
    view_level = (cases["schema_context"] == "DataFrameSchema") | cases["column"].isna()
    cases = cases.assign(column=cases["column"].astype(object).where(~view_level, ""))
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        idx = group["index"].dropna().astype(np.int64).unique()
        if len(idx) == 0:  # a check on the whole frame, not on rows: every row fails it
            idx = np.asarray(frame.index, dtype=np.int64)
        failure = CheckFailure(str(column) or None, str(check), len(idx))
        for row in np.sort(idx)[:MAX_EXAMPLES]:
            failure.examples.append({"row": int(row), **_row_values(frame, int(row), view)})
        failures.append(failure)
        for row in idx:
            reasons.setdefault(int(row), []).append(failure.reason)
            cells.append((int(row), failure.column, failure.check))
    bad = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
    why = ["; ".join(reasons[int(r)]) for r in bad]
    invalid = None
    if keep_invalid and len(bad):
        positions = np.searchsorted(index, bad)
        invalid = (
            pa.Table.from_batches([batch.take(pa.array(positions))])
            .append_column("__reason", pa.array(why, pa.string()))
            .append_column("__row", pa.array(bad, pa.int64()))
        )
    return BatchValidation(failures, bad, why, invalid, bad_strings, sorted(cells, key=lambda c: c[0]))


def clean_table(path: Path, columns: list[str]) -> pa.Table:
    """The file's ``columns`` with every string that is not UTF-8 made null (its row is invalid)."""
    schema = pa.schema([pq.read_schema(path).field(c) for c in columns])
    return pa.Table.from_batches([_without_bad_strings(b) for _, b in _batches(path, columns)], schema)


def _without_bad_strings(batch: pa.RecordBatch) -> pa.RecordBatch:
    arrays = [_nulls_at(a, _invalid_utf8(a)) if _is_string(a.type) else a for a in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


# What pandas cannot tell: a NaN and a null are both NaN in a float column, and a string that
# is not UTF-8 cannot become a Python str. Both are judged on the Arrow batch instead.
NOT_NAN = "not_nan"  # the check a refused NaN fails (see Field.allow_nan)
VALID_UTF8 = "valid_utf8"
_CASE_COLUMNS = ["schema_context", "column", "check", "index"]
_NO_CASES = pd.DataFrame({c: pd.Series([], dtype=object) for c in _CASE_COLUMNS})


@dataclass
class _Judged:
    """Cells judged on the Arrow batch: (column, check) -> failing rows, and each column's cells
    that pandera must not call null (a NaN, or a bad string it was handed as null)."""

    failing: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    not_null: dict[str, np.ndarray] = field(default_factory=dict)


def _arrow_checks(
    view: FeatureView, batch: pa.RecordBatch, index: np.ndarray
) -> tuple[pa.RecordBatch, _Judged]:
    """NaN in fields that refuse it and strings that are not UTF-8; bad strings become nulls."""
    judged = _Judged()
    fields = {f.name: f for f in view.columns}
    arrays = list(batch.columns)
    for i, name in enumerate(batch.schema.names):
        array = arrays[i]
        field_ = fields.get(name)
        if field_ is not None and pa.types.is_floating(array.type):
            nan = np.flatnonzero(pc.fill_null(pc.is_nan(array), False).to_numpy(zero_copy_only=False))
            if len(nan):
                judged.not_null[name] = index[nan]
                if field_.refuses_nan:
                    judged.failing[(name, NOT_NAN)] = index[nan]
        elif _is_string(array.type):
            bad = _invalid_utf8(array)
            if len(bad):
                judged.failing[(name, VALID_UTF8)] = judged.not_null[name] = index[bad]
                arrays[i] = _nulls_at(array, bad)
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema), judged


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _nulls_at(array: pa.Array, rows: np.ndarray) -> pa.Array:
    mask = np.zeros(len(array), dtype=bool)
    mask[rows] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)


def _invalid_utf8(array: pa.Array) -> np.ndarray:
    """The positions of strings that are not UTF-8 (Parquet writers do not all check)."""
    try:
        array.validate(full=True)
        return np.zeros(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    values = array.view(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
    bad = []
    for i, value in enumerate(values.to_pylist()):  # only for a column known to hold one
        if value is not None:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
    return np.asarray(bad, dtype=np.int64)


def _with_arrow_cases(cases: pd.DataFrame, judged: _Judged) -> pd.DataFrame:
    """pandera's failure cases, less its nulls that are not nulls, plus the cells judged on Arrow."""
    if judged.not_null and not cases.empty:
        artefact = np.zeros(len(cases), dtype=bool)
        for column, rows in judged.not_null.items():
            artefact |= (
                (cases["check"] == "not_nullable") & (cases["column"] == column) & cases["index"].isin(rows)
            ).to_numpy()
        cases = cases[~artefact]
    extra = [
        pd.DataFrame({"schema_context": "Column", "column": column, "check": check, "index": rows})
        for (column, check), rows in judged.failing.items()
    ]
    return pd.concat([cases, *extra], ignore_index=True) if extra else cases


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
