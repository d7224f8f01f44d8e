"""Rows a client pushes (a dict of columns, a pyarrow Table, a pandas DataFrame) as the
``Values`` columns of a ``PushFeaturesRequest``: each column in the kind its Arrow type names,
nulls in ``null_positions``. The server casts to the declared types (``push_input``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import InvalidRequestError
from featurestore.serving.v1 import serving_pb2 as pb

_TIMESTAMP = pa.timestamp("us", tz="UTC")


def table(rows: Any) -> dict[str, pb.Values]:
    """Column name -> its ``Values``."""
    arrow = _as_arrow(rows)
    return {name: values(name, arrow.column(name).combine_chunks()) for name in arrow.column_names}


def _as_arrow(rows: Any) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    try:
        if type(rows).__module__.startswith("pandas") and hasattr(rows, "columns"):
            return pa.Table.from_pandas(rows, preserve_index=False)
        if isinstance(rows, Mapping):
            return pa.table({str(k): list(v) for k, v in rows.items()})
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
        raise InvalidRequestError(f"push: the rows cannot be read as columns: {e}") from None
    raise InvalidRequestError(
        "push: rows must be a dict of columns, a pyarrow Table or a pandas DataFrame, "
        f"not {type(rows).__name__}"
    )


def values(name: str, array: pa.Array) -> pb.Values:
    """One column as ``Values``; a null row holds the zero value and its index is in null_positions."""
    out = pb.Values()
    t = array.type
    if pa.types.is_null(t):  # nulls only, type unknown: no kind, every row null
        out.null_positions.extend(range(len(array)))
        return out
    if array.null_count:
        out.null_positions.extend(pc.indices_nonzero(array.is_null()).to_pylist())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        items = out.list_values.values
        for one in array:
            item = items.add()
            if one.is_valid:
                item.CopyFrom(values(name, one.values))
        return out
    kind, cast = _kind(name, t)
    if cast is not None:
        try:
            array = array.cast(cast, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InvalidRequestError(f"push: column {name!r} ({t}) cannot be sent as {cast}: {e}") from None
    if kind == "timestamp_values":
        array = array.cast(pa.int64())
    filled = array.fill_null(_zero(kind)) if array.null_count else array
    getattr(out, kind).values.extend(filled.to_pylist())
    return out


def _kind(name: str, t: pa.DataType) -> tuple[str, pa.DataType | None]:
    if pa.types.is_boolean(t):
        return "bool_values", None
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return "int32_values", pa.int32()
    if pa.types.is_int32(t):
        return "int32_values", None
    if pa.types.is_integer(t):  # int64 and unsigned 32/64 (one past int64 is refused)
        return "int64_values", pa.int64() if not pa.types.is_int64(t) else None
    if pa.types.is_float32(t):
        return "float_values", None
    if pa.types.is_floating(t):
        return "double_values", pa.float64() if not pa.types.is_float64(t) else None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string_values", pa.string() if pa.types.is_large_string(t) else None
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes_values", pa.binary() if pa.types.is_large_binary(t) else None
    if pa.types.is_timestamp(t):  # naive times are UTC, as in process
        return "timestamp_values", _TIMESTAMP
    raise InvalidRequestError(f"push: column {name!r} has type {t}, which a push cannot send")


def _zero(kind: str) -> Any:
    return {"bool_values": False, "string_values": "", "bytes_values": b""}.get(kind, 0)
