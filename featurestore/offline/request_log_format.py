"""The request log's format: its Parquet schema and how values are written as JSON text.

``serving/request_log.py`` writes these files while serving; ``monitoring/skew.py`` and
``offline/feature_log.py`` (training sets from the log) read them. The format lives here,
below all three, so neither reader imports the serving layer.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.definitions.types import DType

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("transport", pa.string()),
        ("entity_index", pa.int32()),
        ("entity_json", pa.string()),  # {"driver_id": 1001, ...}: the request's join keys for this entity
        ("feature", pa.string()),  # view:feature
        ("value_json", pa.string()),  # null when nothing was served
        ("status", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        # Added later, nullable: files written before them lack the columns (read_log_file adds nulls).
        ("run_id", pa.int64()),  # the materialization or push run that wrote the served value
        ("request_json", pa.string()),  # this entity's request data {"column": value, ...}, if any
    ]
)
# Parquet key-value metadata of each file: how it was logged and what was lost before it.
META_MODE = b"featurestore.request_log.mode"  # "complete" or "sampled"
META_SAMPLE = b"featurestore.request_log.sample"
META_DROPPED = b"featurestore.request_log.dropped"  # requests dropped since this process's previous file
# The rows a file holds, beyond its columns. 1 (no key): looked-up features only; 2: also the
# on-demand features as served (computed at request time), so a file of version 1 says nothing
# about the on-demand features its requests were answered.
META_VERSION = b"featurestore.request_log.version"
FORMAT_VERSION = 2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # served timestamps count microseconds from it


def read_log_file(path: Path) -> pa.Table:
    """One log file in the current ``SCHEMA``: columns added since it was written are null."""
    table = pq.read_table(path)
    for name in SCHEMA.names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(SCHEMA.names).cast(SCHEMA)


def dropped_before(path: Path) -> int:
    """Requests the writing process dropped (queue full) since its previous file; 0 for old files."""
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(META_DROPPED, b"0"))


def format_version(path: Path) -> int:
    """The file's ``META_VERSION``: 1 for files written before on-demand outputs were logged."""
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(META_VERSION, b"1"))


def value_json(value: Any) -> str | None:
    """The canonical JSON text of a feature value (served or offline), None for null."""
    if value is None:
        return None
    return json.dumps(_plain(value), separators=(",", ":"), sort_keys=True)


def json_column(dtype: str, values: list[Any]) -> list[str | None]:
    """``value_json`` of each value of a column of ``dtype`` (a DType name), the same text,
    written without the generic encoder where the dtype allows (the request log's writer
    spends most of its time here)."""
    if dtype in ("Int32", "Int64", "Timestamp"):  # timestamps: served as microseconds already
        return [None if v is None else str(v) for v in values]
    if dtype in ("Float32", "Float64"):
        return [
            None if v is None else repr(v) if math.isfinite(v) else f'"{v}"'  # "nan", "inf", "-inf"
            for v in values
        ]
    if dtype == "Bool":
        return [None if v is None else "true" if v else "false" for v in values]
    if dtype == "String":
        return [None if v is None else json.dumps(v) for v in values]  # the C encoder: no options
    return [value_json(v) for v in values]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, datetime):  # microseconds since the epoch, as served
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - EPOCH) // timedelta(microseconds=1)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return value


def column_from_json(texts: list[str | None], dtype: DType) -> pa.Array:
    """Logged value text (``value_json``, ``json_column``) back to an array of ``dtype``."""
    name = dtype.name
    if name in ("Int32", "Int64"):  # the common dtypes parsed without the JSON decoder
        return pa.array([None if t is None else int(t) for t in texts], dtype.arrow)
    if name in ("Float32", "Float64"):
        return pa.array([None if t is None else float(t.strip('"')) for t in texts], dtype.arrow)
    if name == "Bool":
        return pa.array([None if t is None else t == "true" for t in texts], dtype.arrow)
    plain = _reader(name)
    return pa.array([None if t is None else plain(json.loads(t)) for t in texts], dtype.arrow)


def _reader(name: str) -> Any:
    if name == "Bytes":
        return base64.b64decode
    if name.startswith("Float"):
        return float  # also "nan", "inf", "-inf": written as text
    if name == "Timestamp":
        return lambda us: EPOCH + timedelta(microseconds=us)
    if name.startswith("List("):
        one = _reader(name[5:-1])
        return lambda items: [None if v is None else one(v) for v in items]
    return lambda v: v
