"""Running an on-demand view's function: the one place both training sets and lookups call it.

Both paths hand over the same thing, an Arrow table with one column per input typed as
declared (looked-up features by feature name, request fields by field name, nulls where a
feature is absent), and get back the declared outputs as typed Arrow arrays, so the same
function and the same inputs give the same values on both paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from featurestore.definitions import Field, OnDemandFeatureView
from featurestore.definitions.on_demand import OnDemandFunction
from featurestore.definitions.types import DType, pandas_frame
from featurestore.errors import InvalidRequestError, OnDemandError

log = logging.getLogger("featurestore.on_demand")
_LOG_SECONDS = 60.0
_logged: dict[str, float] = {}  # view -> when its function's traceback was last logged
_NUMERIC = (pa.types.is_integer, pa.types.is_floating)


def input_table(
    view: OnDemandFeatureView,
    features: Mapping[str, pa.Array],
    request: Mapping[str, pa.Array],
    fields: Mapping[str, Field],
) -> pa.Table:
    """The function's input: ``features`` by ``view:feature`` (typed as ``fields`` declares
    them) and ``request`` by request field name, in the view's source order."""
    arrays: dict[str, pa.Array] = {}
    for ref in view.feature_inputs:
        name = ref.partition(":")[2]
        arrays[name] = _cast(features[ref], fields[ref].dtype)
    for f in view.request_fields:
        arrays[f.name] = request[f.name]
    return pa.table(arrays)


def compute(
    view: OnDemandFeatureView, function: OnDemandFunction, inputs: pa.Table, outputs: Sequence[Field]
) -> dict[str, pa.Array]:
    """``outputs`` of ``view`` computed from ``inputs``, typed as declared; OnDemandError naming
    the view if the function raises or returns the wrong kind, length or types."""
    frame: Any = inputs if view.mode == "arrow" else pandas_frame(inputs)
    try:
        returned = function(frame)
    except Exception as e:  # noqa: BLE001 - a user's function may raise anything
        _log_failure(view.name)
        raise OnDemandError(
            f"on-demand view {view.name!r}: its function raised {type(e).__name__}: {e}"
        ) from None
    table = _as_table(view, returned)
    if table.num_rows != inputs.num_rows:
        raise OnDemandError(
            f"on-demand view {view.name!r}: its function returned {table.num_rows} rows "
            f"for {inputs.num_rows} input rows"
        )
    out: dict[str, pa.Array] = {}
    for f in outputs:
        if f.name not in table.column_names:
            raise OnDemandError(
                f"on-demand view {view.name!r}: its function returned no column {f.name!r} "
                f"(it returned {table.column_names[:20]})"
            )
        column = table.column(f.name).combine_chunks()
        try:
            out[f.name] = _cast(column, f.dtype)
        except (TypeError, pa.ArrowException):
            raise OnDemandError(
                f"on-demand view {view.name!r}: its function returned {column.type} values for "
                f"{f.name!r}, declared {f.dtype.name}"
            ) from None
    return out


def _log_failure(view: str) -> None:
    """The traceback of a raising function, for its author: in the log (the caller reads only
    the exception's text), at most once a minute per view, since every request may raise."""
    now = time.monotonic()
    if now - _logged.get(view, -_LOG_SECONDS) >= _LOG_SECONDS:
        _logged[view] = now
        log.warning("on-demand view %r: its function raised (once a minute per view)", view, exc_info=True)


def typed_request_column(name: str, values: pa.Array, dtype: DType, where: str) -> pa.Array:
    """A request field's values as its declared type; InvalidRequestError naming the field."""
    try:
        return _cast(values, dtype)
    except (TypeError, pa.ArrowException):
        raise InvalidRequestError(
            f"request field {name!r} of {where} takes {dtype.name} values, got {values.type}"
        ) from None


def _as_table(view: OnDemandFeatureView, returned: Any) -> pa.Table:
    if isinstance(returned, pa.Table):
        return returned
    if isinstance(returned, pa.RecordBatch):
        return pa.Table.from_batches([returned])
    import pandas as pd  # only a pandas-mode function gets here with a frame

    if isinstance(returned, pd.DataFrame):
        try:
            return pa.Table.from_pandas(returned, preserve_index=False)
        except (TypeError, ValueError, pa.ArrowException) as e:
            raise OnDemandError(
                f"on-demand view {view.name!r}: its function returned a DataFrame Arrow cannot "
                f"read ({' '.join(str(e).split())[:200]})"
            ) from None
    raise OnDemandError(
        f"on-demand view {view.name!r}: its function returned {type(returned).__name__}, not "
        f"{'a pyarrow Table' if view.mode == 'arrow' else 'a pandas DataFrame'}"
    )


def _cast(array: pa.Array | pa.ChunkedArray, dtype: DType) -> pa.Array:
    """``array`` as ``dtype``: the same family of type, a numeric type cast without loss, or
    nulls only. A string is never read as a number (Arrow's cast would parse it)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    target = dtype.arrow
    if array.type == target:
        return array
    if pa.types.is_null(array.type) or dtype.accepts(array.type):
        return array.cast(target)
    if any(is_(array.type) for is_ in _NUMERIC) and any(is_(target) for is_ in _NUMERIC):
        return array.cast(target, safe=True)
    raise TypeError(f"{array.type} is not {dtype.name}")
