"""The request log's value text: the writer's column-at-a-time JSON is exactly ``value_json``
(skew compares the two as text), and files of the first format read in the current schema."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.definitions.types import (
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    List,
    String,
    Timestamp,
)
from featurestore.offline.request_log_format import (
    EPOCH,
    SCHEMA,
    column_from_json,
    dropped_before,
    format_version,
    json_column,
    read_log_file,
    value_json,
)

VALUES: dict[str, list[Any]] = {
    "Int64": [0, -1, 2**63 - 1, -(2**63), None],
    "Int32": [7, -(2**31), None],
    "Float64": [0.1, -0.0, 1e300, 5e-324, float("nan"), float("inf"), float("-inf"), 3.0, None],
    "Float32": [float(pa.scalar(0.1, pa.float32()).as_py()), 1.5, None],
    "Bool": [True, False, None],
    "String": ["Warsaw", "", 'quo"te', "back\\slash", "new\nline", "zażółć 東京 🚕", "\x00", None],
    "Timestamp": [1_700_000_000_000_000, 0, -1, None],
    "Bytes": [b"\x00\xff", b"", None],
    "List(Float64)": [[1.0, None, float("nan")], [], None],
}
DTYPES = {
    "Int64": Int64,
    "Int32": Int32,
    "Float64": Float64,
    "Float32": Float32,
    "Bool": Bool,
    "String": String,
    "Timestamp": Timestamp,
    "Bytes": Bytes,
    "List(Float64)": List(Float64),
}


@pytest.mark.parametrize("dtype", sorted(VALUES))
def test_json_column_is_value_json(dtype: str) -> None:
    values = VALUES[dtype]
    # Timestamps are served as microseconds: value_json of the integer.
    assert json_column(dtype, values) == [value_json(v) for v in values]


def test_a_file_of_the_first_format_reads_in_the_current_schema(tmp_path: Path) -> None:
    first = [n for n in SCHEMA.names if n not in ("run_id", "request_json")]
    row = {
        "request_id": ["r"],
        "request_time": [0],
        "transport": ["grpc"],
        "entity_index": [0],
        "entity_json": ['{"driver_id":1}'],
        "feature": ["v:f"],
        "value_json": ["1"],
        "status": ["PRESENT"],
        "event_timestamp": [0],
    }
    table = pa.table({n: pa.array(row[n]).cast(SCHEMA.field(n).type) for n in first})
    pq.write_table(table, tmp_path / "old.parquet")
    read = read_log_file(tmp_path / "old.parquet")
    assert read.schema == SCHEMA
    assert read.column("run_id").to_pylist() == [None] and read.column("request_json").to_pylist() == [None]
    assert dropped_before(tmp_path / "old.parquet") == 0  # no metadata: nothing known dropped
    assert format_version(tmp_path / "old.parquet") == 1  # no metadata: no on-demand features logged


@pytest.mark.parametrize("dtype", sorted(VALUES))
def test_logged_text_reads_back_as_the_values_served(dtype: str) -> None:
    kind = DTYPES[dtype]
    values = VALUES[dtype]
    read = column_from_json(json_column(dtype, values), kind)
    if dtype == "Timestamp":  # served as microseconds
        values = [None if v is None else EPOCH + timedelta(microseconds=v) for v in values]
    expected = pa.array(values, kind.arrow)
    assert read.type == expected.type
    # NaN != NaN: compare the text of each value.
    assert [repr(v) for v in read.to_pylist()] == [repr(v) for v in expected.to_pylist()]
