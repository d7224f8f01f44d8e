"""A push request's columns as an Arrow table: protobuf ``Values`` (gRPC) or JSON lists (HTTP).

A lookup's ``request_data`` columns are read the same way (``request_column``,
``json_request_column``), so a value a push takes is a value a request field takes.

Only the translation happens here: which columns a view takes, their types and the batch's
checks are the push core's (``online/push.py``), so every transport refuses the same batch
with the same message. Scalars keep the type they were sent as (an ``int32_values`` column
for an ``Int64`` feature is cast by the core, safely); what JSON cannot say by itself is read
by the declared type: times as ISO 8601 strings or microseconds since the epoch, bytes as
base64, non-finite floats as "NaN", "Infinity", "-Infinity" (as the lookup answers write them).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.definitions.types import DType
from featurestore.errors import InvalidRequestError
from featurestore.online.push import MAX_PUSH_ROWS, declared_columns

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_KINDS: dict[str, pa.DataType] = {
    "int32_values": pa.int32(),
    "int64_values": pa.int64(),
    "float_values": pa.float32(),
    "double_values": pa.float64(),
    "string_values": pa.string(),
    "bool_values": pa.bool_(),
    "bytes_values": pa.binary(),
    "timestamp_values": _TIMESTAMP,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _what(view: FeatureView) -> str:
    return f"push to feature view {view.name!r}"


def _check_lengths(view: FeatureView, lengths: Mapping[str, int]) -> None:
    """Before any value is converted: the row limit, and one value per row in every column."""
    if not lengths:
        return
    most = max(lengths.values())
    if most > MAX_PUSH_ROWS:
        raise InvalidRequestError(
            f"{_what(view)}: {most:,} rows, more than the limit of {MAX_PUSH_ROWS:,} per push"
        )
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name!r} {n}" for name, n in sorted(lengths.items())[:10])
        raise InvalidRequestError(
            f"{_what(view)}: every column needs one value per row, but the columns have {shown} values"
        )


# -- gRPC ----------------------------------------------------------------------------------------


def from_values(view: FeatureView, columns: Mapping[str, Any]) -> pa.Table:
    """A ``PushFeaturesRequest``'s columns (name -> ``Values``) as an Arrow table."""
    declared = {name: dtype for name, dtype, _ in declared_columns(view)}
    lengths = {}
    for name, values in columns.items():
        kind = values.WhichOneof("kind")
        # No kind: a column of nulls only (its type unknown to the sender), one per null position.
        lengths[name] = len(getattr(values, kind).values) if kind else len(values.null_positions)
    _check_lengths(view, lengths)
    arrays = {}
    for name, values in columns.items():
        kind = values.WhichOneof("kind")
        try:
            arrays[name] = _column(values, kind, lengths[name], declared.get(name))
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
            reason = " ".join(str(e).split())
            dtype = declared.get(name)
            raise InvalidRequestError(
                f"{_what(view)}: column {name!r} cannot be read"
                + (f" as {dtype.name}" if dtype else "")
                + f" ({reason})"
            ) from None
    return pa.table(arrays)


def _column(values: Any, kind: str | None, n: int, dtype: DType | None) -> pa.Array:
    nulls = list(values.null_positions)
    if nulls and (max(nulls) >= n):
        raise ValueError(f"a null position ({max(nulls)}) is past its {n} values")
    if kind is None:
        return pa.nulls(n)
    if kind == "list_values":
        rows: list[Any] = [_one_list(v) for v in values.list_values.values]
        for i in nulls:
            rows[i] = None
        # Lists are read as declared: their items' kind alone cannot say Int32 from Int64.
        declared = dtype is not None and dtype.name.startswith("List(")
        return pa.array(rows, type=dtype.arrow if declared and dtype is not None else None)
    raw = getattr(values, kind).values
    if kind == "timestamp_values":
        array = pa.array(raw, pa.int64()).cast(_TIMESTAMP)
    else:
        array = pa.array(raw, _KINDS[kind])
    if nulls:
        mask = [False] * n
        for i in nulls:
            mask[i] = True
        array = pa.array(array.to_pylist(), array.type, mask=pa.array(mask))
    return array


def request_column(values: Any, dtype: DType) -> pa.Array:
    """One ``request_data`` column of a GetOnlineFeaturesRequest (a ``Values``), as Arrow."""
    kind = values.WhichOneof("kind")
    if kind == "list_values":
        raise ValueError("request fields are scalars, not lists")
    n = len(getattr(values, kind).values) if kind else len(values.null_positions)
    return _column(values, kind, n, dtype)


def _one_list(values: Any) -> list[Any]:
    kind = values.WhichOneof("kind")
    out: list[Any] = list(getattr(values, kind).values) if kind and kind != "list_values" else []
    for j in values.null_positions:
        if j >= len(out):
            raise ValueError(f"a null position ({j}) is past the end of a list of {len(out)} items")
        out[j] = None
    return out


# -- JSON ----------------------------------------------------------------------------------------


def from_json(view: FeatureView, columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """``{"column": [values...]}`` as an Arrow table, values read by their declared types."""
    _check_lengths(view, {name: len(values) for name, values in columns.items()})
    declared = {name: dtype for name, dtype, _ in declared_columns(view)}
    arrays = {}
    for name, values in columns.items():
        dtype = declared.get(name)
        if dtype is None:  # the core names it as not declared, with the columns the view takes
            arrays[name] = pa.nulls(len(values))
            continue
        try:
            arrays[name] = _json_column(values, dtype)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
            reason = " ".join(str(e).split())
            raise InvalidRequestError(
                f"{_what(view)}: column {name!r} cannot be read as {dtype.name} ({reason})"
            ) from None
    return pa.table(arrays)


def json_request_column(values: Any, dtype: DType) -> pa.Array:
    """One ``request_data`` column of an HTTP lookup (a JSON list), read by its declared type."""
    if not isinstance(values, list):
        raise TypeError(f"a request field takes a list of values, not {type(values).__name__}")
    return _json_column(values, dtype)


def _json_column(values: Sequence[Any], dtype: DType) -> pa.Array:
    if dtype.name.startswith("List("):
        one = _json_reader(dtype.name[5:-1])
        if one is None:
            return pa.array(values)
        return pa.array(
            [None if v is None else [None if x is None else one(x) for x in _a_list(v)] for v in values]
        )
    one = _json_reader(dtype.name)
    if one is None:  # numbers, strings, booleans: as JSON typed them; the core casts safely
        return pa.array(values)
    return pa.array([None if v is None else one(v) for v in values])


def _a_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"a list column holds {type(value).__name__} values, not lists")
    return value


def _json_reader(dtype_name: str) -> Callable[[Any], Any] | None:
    if dtype_name == "Timestamp":
        return _time
    if dtype_name == "Bytes":
        return _bytes
    if dtype_name.startswith("Float"):
        return _float
    return None


def _time(value: Any) -> datetime:
    if type(value) is int:
        return _EPOCH + timedelta(microseconds=value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # naive: UTC, as in process
    raise ValueError(
        f"a time is an ISO 8601 string or microseconds since the epoch, not {type(value).__name__}"
    )


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"bytes are sent as base64 strings, not {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{value[:40]!r} is not base64") from None


def _float(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _FLOATS:
            raise ValueError(f"{value[:40]!r} is not a number (non-finite: NaN, Infinity, -Infinity)")
        return _FLOATS[value]
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value
