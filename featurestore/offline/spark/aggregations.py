"""Aggregation features at each entity row on Spark, with DuckDB's semantics (``offline/aggregations.py``).

Per aggregation view, the entity rows and the view's events are unioned, hash-partitioned by
the join keys (entity rows that can match nothing alone by their ``ROW``, as in ``pit.py``)
and, within each partition, sorted: no cross join, nothing collected to the driver.

1. Versions: events sharing keys and event time are versions of one event; the newest created
   (nulls oldest), then the last ingested, wins (a ``row_number`` over (keys, time)).
2. Windows: times are microseconds (longs), so the frame ``rangeBetween(-(W - 1), 0)`` over
   them is (t - W, t], the events at t included. Spark recomputes a sliding frame's
   aggregate for each row: O(events in the window) per row. A lifetime window is
   ``rangeBetween(unboundedPreceding, currentRow)``, which Spark updates incrementally: running
   totals, O(1) per row. Entity rows hold nulls, which every aggregate skips.
3. Functions: float values are read as doubles with NaN as null; integer sums are summed as
   decimal(38,0), exact, and a sum outside Int64 fails the job with ``OverflowError``'s tag
   (``spark_error`` makes it an InvalidRequestError). ``count_distinct`` over a window is
   ``size(collect_set)``; over the lifetime it counts each value's first event (one more
   window by (keys, value)). ``last_n``: per event, the ``n`` newest non-null values up to it
   (a rows frame over the events with a value, ``n`` rows); each entity row takes the newest
   event's list at or before it and keeps the values inside its window, newest first.

Floats equal DuckDB's within rounding where the order of a sum differs (Spark sums a frame
in time order, DuckDB along its segment tree): sums, means, variances and deviations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import timedelta
from functools import reduce
from typing import TYPE_CHECKING

from featurestore.definitions import Aggregation, Field
from featurestore.definitions.types import FLOATS
from featurestore.errors import FeatureStoreError, InvalidRequestError
from featurestore.offline.entities import ROW, TS
from featurestore.offline.layout import CREATED_TS, EVENT_TS, SEQ
from featurestore.offline.spark.entities import column

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, WindowSpec

    from featurestore.offline.pit import OutputColumn
    from featurestore.offline.spark.pit import ViewRows

_T, _SIDE, _C, _S, _ALONE, _RANK = "__fs_t", "__fs_side", "__fs_c", "__fs_s", "__fs_alone", "__fs_rank"
_EVENT, _ENTITY = 0, 1
_INTEGER_KEYS = ("Int32", "Int64")
_INT64 = (-(2**63), 2**63 - 1)
# A failed task's message reaches the driver inside Java's: the overflow says this and JSON.
_TAG = "featurestore-aggregation-overflow:"
_CARRIED = re.compile(re.escape(_TAG) + r" (\{.*?\})")


def join_aggregations(entities: DataFrame, view: ViewRows, outputs: Sequence[OutputColumn]) -> DataFrame:
    """Entity columns (all of ``entities``, carried) and each output column of the view."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    definition = view.request.view
    keys = [k.name for k in definition.join_keys]
    ints = {k.name for k in definition.join_keys if k.dtype.name in _INTEGER_KEYS}
    slots = [f"__fs_k{i}" for i in range(len(keys))]
    wanted = {o.feature for o in outputs}
    aggs = [a for a in definition.aggregations if a.name in wanted]
    refuse_sketches(definition.name, aggs)
    columns = {f.name: f for f in definition.columns}
    used = sorted({a.column for a in aggs})
    value = {c: f"__fs_v{i}" for i, c in enumerate(used)}  # entity columns may share the names

    def key(name: str) -> Column:
        return column(name).cast("long") if name in ints else column(name)

    carried = entities.columns
    matchable = reduce(lambda a, b: a & b, [column(k).isNotNull() for k in keys], F.col(TS).isNotNull())
    events = view.rows.where(reduce(lambda a, b: a & b, [column(k).isNotNull() for k in keys])).select(
        *[key(k).alias(s) for k, s in zip(keys, slots, strict=True)],
        F.unix_micros(F.col(EVENT_TS)).alias(_T),
        F.lit(_EVENT).alias(_SIDE),
        F.col(CREATED_TS).alias(_C),
        F.col(SEQ).alias(_S),
        *[event_value(columns[c]).alias(value[c]) for c in used],
    )
    entity_rows = entities.select(
        *[column(c) for c in carried],
        *[key(k).alias(s) for k, s in zip(keys, slots, strict=True)],
        F.unix_micros(F.col(TS)).alias(_T),
        F.lit(_ENTITY).alias(_SIDE),
        F.when(~matchable, F.col(ROW)).alias(_ALONE),
    )
    part = [*slots, _ALONE]
    # Partitioned once by the keys: every window below partitions by them (and more), so
    # each needs a sort, not a shuffle; the last one's sort is the versions' (a prefix of it).
    stream = entity_rows.unionByName(events, allowMissingColumns=True).repartition(*part)
    versions = Window.partitionBy(*part, _T, _SIDE).orderBy(F.col(_C).desc_nulls_last(), F.col(_S).desc())
    stream = stream.withColumn(_RANK, F.row_number().over(versions))
    stream = stream.where((F.col(_SIDE) == _ENTITY) | (F.col(_RANK) == 1))

    is_event = F.col(_SIDE) == _EVENT
    newest: dict[str, str] = {}  # column -> its last_n lists (the n newest values, per event)
    for c in used:
        n = max([a.n or 0 for a in aggs if a.column == c and a.function == "last_n"], default=0)
        if n:
            present = is_event & F.col(value[c]).isNotNull()
            rows = Window.partitionBy(*part).orderBy(present, F.col(_T)).rowsBetween(-(n - 1), 0)
            item = F.when(present, F.struct(F.col(_T).alias("t"), F.col(value[c]).alias("v")))
            newest[c] = f"__fs_last_{value[c]}"
            stream = stream.withColumn(newest[c], F.when(present, F.collect_list(item).over(rows)))
    firsts: dict[str, str] = {}  # column -> 1 at the first event of each value (lifetime distinct)
    for c in used:
        if any(a.column == c and a.function == "count_distinct" and a.window is None for a in aggs):
            distinct = distinct_value(F.col(value[c]), columns[c])
            first_seen = F.min(F.when(is_event, F.col(_T))).over(Window.partitionBy(*part, distinct))
            firsts[c] = f"__fs_first_{value[c]}"
            stream = stream.withColumn(
                firsts[c], F.when(is_event & F.col(value[c]).isNotNull() & (F.col(_T) == first_seen), 1)
            )

    order = Window.partitionBy(*part).orderBy(F.col(_T))
    running = order.rangeBetween(Window.unboundedPreceding, Window.currentRow)
    raw = []
    for i, a in enumerate(aggs):
        frame = running if a.window is None else order.rangeBetween(-(_micros(a.window) - 1), 0)
        if a.function == "last_n":
            expr = F.last(F.col(newest[a.column]), ignorenulls=True).over(running)
        elif a.function == "count_distinct" and a.window is None:
            expr = F.count(F.col(firsts[a.column])).over(running)
        else:
            expr = _window_aggregate(a, F.col(value[a.column]), columns[a.column], frame)
        raw.append(expr.alias(f"__fs_a{i}"))
    at_rows = stream.select(*[column(name) for name in carried], _T, _SIDE, *raw).where(
        F.col(_SIDE) == _ENTITY
    )
    finals = [
        _final(a, F.col(f"__fs_a{i}"), columns[a.column], definition.name).alias(
            next(o.name for o in outputs if o.feature == a.name)
        )
        for i, a in enumerate(aggs)
    ]
    by_feature = {a.name: f for a, f in zip(aggs, finals, strict=True)}
    return at_rows.select(*[column(name) for name in carried], *[by_feature[o.feature] for o in outputs])


def refuse_sketches(view: str, aggregations: Sequence[Aggregation]) -> None:
    """approx_count_distinct hashes with DuckDB's MD5 of DuckDB's text form of a value, which
    Spark's casts do not reproduce for every type: refused rather than served differently."""
    sketched = [a.name for a in aggregations if a.function == "approx_count_distinct"]
    if sketched:
        raise InvalidRequestError(
            f"view {view!r}: approx_count_distinct ({', '.join(sketched)}) is not supported on "
            'the Spark engine yet: use [offline] engine = "duckdb" for this view'
        )


def spark_error(error: Exception) -> FeatureStoreError | None:
    """A job's failure from an integer sum past Int64, as our error; None for any other."""
    found = _CARRIED.search(str(error))
    if not found:
        return None
    carried = json.loads(found.group(1))
    return InvalidRequestError(
        f"feature {carried['feature']}: a sum is outside Int64 at some entity row; declare "
        f"{carried['column']!r} as Float64 (summed in double) or use a shorter window"
    )


def exact_long(total: Column, view: str, a: Aggregation) -> Column:
    """An integer sum (decimal) as Int64; past Int64, the job fails (``spark_error`` names ``a``)."""
    from pyspark.sql import functions as F

    carried = json.dumps({"feature": f"{view}:{a.name}", "column": a.column})
    outside = (total < F.lit(_INT64[0])) | (total > F.lit(_INT64[1]))
    fail = F.raise_error(F.lit(f"{_TAG} {carried}")).cast("long")
    return F.when(outside, fail).otherwise(total.cast("long"))


def _micros(window: timedelta) -> int:
    return window // timedelta(microseconds=1)


def event_value(field: Field) -> Column:
    """An event's value as aggregated: floats as doubles with NaN as null (DuckDB's stream)."""
    from pyspark.sql import functions as F

    c = column(field.name)
    if field.dtype.name in FLOATS:
        return F.when(~F.isnan(c), c.cast("double"))
    return c


def distinct_value(c: Column, field: Field) -> Column:
    """The value as ``count_distinct`` compares it: -0.0 is 0.0 (Spark's sets tell them apart)."""
    from pyspark.sql import functions as F

    if field.dtype.name in FLOATS:
        return F.when(c == F.lit(0.0), F.lit(0.0)).otherwise(c)
    return c


def _window_aggregate(a: Aggregation, c: Column, field: Field, frame: WindowSpec) -> Column:
    from pyspark.sql import functions as F

    double = c.cast("double")
    if a.function == "sum":
        summed = c if field.dtype.name in FLOATS else c.cast("decimal(38,0)")  # exact for integers
        return F.sum(summed).over(frame)
    if a.function == "count_distinct":
        return F.size(F.collect_set(distinct_value(c, field)).over(frame))
    return {
        "count": lambda: F.count(c),
        "mean": lambda: F.avg(double),
        "min": lambda: F.min(c),
        "max": lambda: F.max(c),
        "variance": lambda: F.var_samp(double),
        "stddev": lambda: F.stddev_samp(double),
        "first": lambda: F.first(c, ignorenulls=True),
        "last": lambda: F.last(c, ignorenulls=True),
    }[a.function]().over(frame)


def _final(a: Aggregation, raw: Column, field: Field, view: str) -> Column:
    """The feature at an entity row from its window aggregate, typed as declared."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    dtype = a.output_dtype(field.dtype)
    if a.function in ("count", "count_distinct"):
        return F.coalesce(raw, F.lit(0)).cast("long")
    if a.function == "sum" and field.dtype.name not in FLOATS:
        return exact_long(raw, view, a)
    if a.function == "last_n":
        kept = raw
        if a.window is not None:  # the newest event's list: keep the values inside the window
            start = F.col(_T) - F.lit(_micros(a.window))
            kept = F.filter(kept, lambda x: x["t"] > start)
        values = F.transform(F.slice(F.reverse(kept), 1, a.n or 0), lambda x: x["v"])
        return F.when(F.size(values) > 0, values).cast(from_arrow_type(dtype.arrow))
    return raw.cast(from_arrow_type(dtype.arrow))
