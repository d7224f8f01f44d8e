"""Feature value types and their Arrow, DuckDB and pandas counterparts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DType:
    """A feature value type; compare by name, map to Arrow and DuckDB."""

    name: str
    arrow: pa.DataType
    duckdb: str

    def __repr__(self) -> str:
        return self.name

    def accepts(self, arrow_type: pa.DataType) -> bool:
        """Whether a Parquet column of ``arrow_type`` holds values of this type."""
        return _family(arrow_type) == _family(self.arrow)


Int32 = DType("Int32", pa.int32(), "INTEGER")
Int64 = DType("Int64", pa.int64(), "BIGINT")
Float32 = DType("Float32", pa.float32(), "FLOAT")
Float64 = DType("Float64", pa.float64(), "DOUBLE")
String = DType("String", pa.string(), "VARCHAR")
Bool = DType("Bool", pa.bool_(), "BOOLEAN")
Bytes = DType("Bytes", pa.binary(), "BLOB")
Timestamp = DType("Timestamp", pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ")

FLOATS = frozenset({Float32.name, Float64.name})  # the types that can hold NaN
SCALARS: dict[str, DType] = {
    t.name: t for t in (Int32, Int64, Float32, Float64, String, Bool, Bytes, Timestamp)
}


def List(inner: DType) -> DType:  # noqa: N802 - reads like a type constructor
    """A list of ``inner`` values, e.g. ``List(Float32)`` for an embedding."""
    if inner.name.startswith("List("):
        raise TypeError("nested list types are not supported")
    return DType(f"List({inner.name})", pa.list_(inner.arrow), f"{inner.duckdb}[]")


def dtype_from_name(name: str) -> DType:
    """Inverse of ``DType.name``, used when reading the registry."""
    if name.startswith("List(") and name.endswith(")"):
        return List(dtype_from_name(name[5:-1]))
    try:
        return SCALARS[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(SCALARS)}") from None


def dtype_from_arrow(arrow_type: pa.DataType) -> DType | None:
    """The DType whose values an Arrow column holds, or None if none does."""
    for dtype in SCALARS.values():
        if dtype.accepts(arrow_type):
            return dtype
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = dtype_from_arrow(arrow_type.value_type)
        return List(inner) if inner is not None and inner in SCALARS.values() else None
    return None


def pandas_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame with Arrow-backed dtypes (``pd.ArrowDtype``).

    Every declared type survives, nulls included: an Int64 column with nulls stays
    ``int64[pyarrow]`` (numpy would make it float64), a Bool one ``bool[pyarrow]`` (not
    object), a list keeps its item type. The same for training sets and online responses.
    """
    import pandas as pd  # not on the serving path unless asked for

    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _family(t: pa.DataType) -> str:
    # Physical variants that hold the same values count as one type:
    # string/large_string/string_view, any timestamp unit or zone, list/large_list.
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_family(t.value_type)}>"
    return str(t)
