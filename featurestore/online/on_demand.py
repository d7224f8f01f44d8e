"""On-demand features of a lookup: computed after the read, from the looked-up values and
the request's ``request_data``, by the function a training set runs (``on_demand/compute.py``).

Statuses of a computed value: PRESENT when the function returned a value, NULL_VALUE when it
returned null. Absent inputs (NOT_FOUND, EXPIRED, CORRUPT) reach the function as nulls, as a
training set's point-in-time join gives them; what it makes of them is its own. A computed
value has no event time (0 on the wire).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from featurestore.definitions import Field, OnDemandFeatureView
from featurestore.definitions.on_demand import OnDemandFunction
from featurestore.definitions.types import DType
from featurestore.errors import InvalidRequestError, OnDemandTimeoutError
from featurestore.on_demand import compute, input_table, typed_request_column

# Functions run in these threads, so that a server's event loop keeps answering and a slow
# function is bounded by its request's deadline. A thread cannot be stopped: one that runs
# past its deadline holds its thread until it returns, and with every thread held new
# on-demand requests wait and answer DEADLINE_EXCEEDED instead of piling up more threads.
MAX_THREADS = 4
DEFAULT_ON_DEMAND_TIMEOUT = 1.0  # seconds a server gives on-demand functions per request, at most
_pool = concurrent.futures.ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="featurestore-on-demand")

# How one raw request column becomes an Arrow array of (or castable to) a declared type:
# each transport reads its own encoding (protobuf Values, JSON lists, Python lists).
ColumnReader = Callable[[Any, DType], pa.Array]


@dataclass(frozen=True)
class Output:
    name: str  # the column name: feature, or view__feature
    ref: str  # view:feature
    field: Field


@dataclass(frozen=True)
class Step:
    """One on-demand view of a lookup: its function and the outputs asked of it."""

    view: OnDemandFeatureView
    function: OnDemandFunction
    outputs: tuple[Output, ...]


@dataclass(frozen=True)
class OnDemandPlan:
    """The on-demand part of a lookup plan."""

    steps: tuple[Step, ...]
    inputs: Mapping[str, Field]  # view:feature -> field, of every looked-up input
    request_fields: Mapping[str, tuple[Field, str]]  # name -> (field, the view that reads it)
    requested: tuple[str, ...]  # every requested reference, in request order
    hidden: frozenset[str]  # inputs looked up only for the functions: not answered

    def request_columns(self, n: int, data: Any, read: ColumnReader | None = None) -> dict[str, pa.Array]:
        """The request's ``request_data`` checked: exactly the fields the views read, one value
        per entity, each of its declared type."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidRequestError("request_data must map each request field to a list of values")
        unknown = sorted(set(data) - set(self.request_fields))
        if unknown:
            raise InvalidRequestError(
                f"unknown request field(s) {[str(u)[:40] for u in unknown[:10]]}; the requested "
                f"on-demand features read {sorted(self.request_fields)}"
            )
        out: dict[str, pa.Array] = {}
        for name, (f, view) in self.request_fields.items():
            where = f"on-demand view {view!r}"
            if name not in data:
                raise InvalidRequestError(f"missing request field {name!r}, which {where} reads")
            try:
                values = (read or _python_column)(data[name], f.dtype)
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
                raise InvalidRequestError(
                    f"request field {name!r} of {where} cannot be read as {f.dtype.name} "
                    f"({' '.join(str(e).split())[:200]})"
                ) from None
            if len(values) != n:
                raise InvalidRequestError(
                    f"request field {name!r} has {len(values)} values for {n} entities: give one per entity"
                )
            out[name] = typed_request_column(name, values, f.dtype, where)
        return out

    def apply(self, features: Sequence[Any], n: int, request: Mapping[str, pa.Array]) -> list[Any]:
        """The answer's feature columns (``FeatureColumn``s): the requested looked-up ones and
        the computed ones, in request order. ``features`` are the looked-up columns."""
        from featurestore.online.lookup import NULL_VALUE, PRESENT, FeatureColumn

        by_ref = {c.ref: c for c in features}
        computed: dict[str, FeatureColumn] = {}
        for step in self.steps:
            looked_up = {
                ref: pa.array(by_ref[ref].values, self.inputs[ref].dtype.arrow)
                for ref in step.view.feature_inputs
            }
            table = input_table(step.view, looked_up, request, self.inputs)
            arrays = compute(step.view, step.function, table, [o.field for o in step.outputs])
            for o in step.outputs:
                values = _values(arrays[o.field.name])
                statuses = [PRESENT if v is not None else NULL_VALUE for v in values]
                computed[o.ref] = FeatureColumn(o.name, o.ref, o.field, values, statuses, [None] * n)
        return [computed.get(ref) or by_ref[ref] for ref in self.requested]

    async def apply_async(
        self, features: Sequence[Any], n: int, request: Mapping[str, pa.Array], timeout: float
    ) -> list[Any]:
        """``apply`` in a worker thread, within ``timeout`` seconds (OnDemandTimeoutError after)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_pool, self.apply, features, n, request)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            names = sorted({s.view.name for s in self.steps})
            raise OnDemandTimeoutError(
                f"on-demand view(s) {names} did not compute within the deadline ({timeout:g} s)"
            ) from None


def _python_column(values: Any, dtype: DType) -> pa.Array:
    """A Python list (or a numpy or Arrow array) of one request field."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray):
        return pa.array(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError("a request field takes a list of values")
    return pa.array(list(values), dtype.arrow if dtype.name == "Timestamp" else None)


def _values(array: pa.Array) -> list[Any]:
    """Python values as lookups answer them (times as microseconds since the epoch)."""
    if pa.types.is_timestamp(array.type):
        return array.cast(pa.int64()).to_pylist()
    if pa.types.is_list(array.type) and pa.types.is_timestamp(array.type.value_type):
        return array.cast(pa.list_(pa.int64())).to_pylist()
    return array.to_pylist()
