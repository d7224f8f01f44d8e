"""The point-in-time join on Spark, with the DataFrame API: a sort-merge as-of join per view.

The semantics are DuckDB's (``offline/pit.py``): for each entity row, the view's row with
equal join keys and the greatest (event time, created time with null first, ``__seq``) not
after (entity time, +inf, +inf), both bounds inclusive; a TTL nulls a match whose event time
is before ``entity time - ttl``; an entity row with a null key or time matches nothing.

How, per view: the entity rows and the view's rows are unioned on the join keys (integer
keys of any width as 64-bit), partitioned by the keys and ordered within each key by
(time, side, created time nulls first, ``__seq``), the side putting an entity row after
every view row of its time (the inclusive bound). ``last(row, ignorenulls)`` over the frame
``rows between unbounded preceding and current row`` then gives each entity row the newest
view row at or before it. That is one shuffle and one sort per view, no cross join, nothing
collected to the driver. View rows with a null key never enter the union; an entity row that
can match nothing (a null key or time) does, alone in a window partition of its own (its
``ROW``), so every entity row takes one path through each view: a second branch for those
rows would read the previous view's result again, and Spark would evaluate that view's
window twice (it reuses the shuffle, not what is computed after it).

Known limit: a key is one window partition, so one task sorts every row of a hot key (skew);
Spark spills it to disk rather than failing, but that task bounds the join's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce
from typing import TYPE_CHECKING

from featurestore.offline.entities import ROW, TS
from featurestore.offline.layout import CREATED_TS, EVENT_TS, SEQ
from featurestore.offline.pit import OutputColumn
from featurestore.offline.spark.aggregations import join_aggregations
from featurestore.offline.spark.entities import column
from featurestore.registry import ViewRequest

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_T, _SIDE, _C, _S, _MATCH, _ALONE = "__fs_t", "__fs_side", "__fs_c", "__fs_s", "__fs_match", "__fs_alone"
_VIEW_ROW, _ENTITY_ROW = 0, 1  # the side: an entity row sorts after the view's rows of its time
_INTEGER_KEYS = ("Int32", "Int64")


@dataclass(frozen=True)
class ViewRows:
    """One view of the request and its ingested rows (the stored schema) as a Spark DataFrame."""

    request: ViewRequest
    rows: DataFrame


def point_in_time(
    entities: DataFrame, views: Sequence[ViewRows], outputs: Sequence[OutputColumn]
) -> DataFrame:
    """Entity columns (with ``ROW`` and ``TS``) then each output column, in no particular order."""
    result = entities
    for view in views:
        mine = [o for o in outputs if o.view == view.request.view.name]
        if view.request.view.aggregations:
            result = join_aggregations(result, view, mine)
        else:
            result = _join_view(result, view, mine)
    return result


def _join_view(entities: DataFrame, view: ViewRows, outputs: Sequence[OutputColumn]) -> DataFrame:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    definition = view.request.view
    keys = [k.name for k in definition.join_keys]
    ints = {k.name for k in definition.join_keys if k.dtype.name in _INTEGER_KEYS}
    slots = [f"__fs_k{i}" for i in range(len(keys))]

    def key(name: str) -> Column:
        return column(name).cast("long") if name in ints else column(name)

    carried = entities.columns
    matchable = reduce(lambda a, b: a & b, [column(k).isNotNull() for k in keys], F.col(TS).isNotNull())
    features = sorted({o.feature for o in outputs})
    view_rows = view.rows.where(
        reduce(lambda a, b: a & b, [column(k).isNotNull() for k in keys])
    ).select(
        *[key(k).alias(s) for k, s in zip(keys, slots, strict=True)],
        F.col(EVENT_TS).alias(_T),
        F.lit(_VIEW_ROW).alias(_SIDE),
        F.col(CREATED_TS).alias(_C),
        F.col(SEQ).alias(_S),
        F.struct(F.col(EVENT_TS).alias("t"), *[column(f).alias(f) for f in features]).alias(_MATCH),
    )
    entity_rows = entities.select(
        *[column(c) for c in carried],
        *[key(k).alias(s) for k, s in zip(keys, slots, strict=True)],
        F.col(TS).alias(_T),
        F.lit(_ENTITY_ROW).alias(_SIDE),
        # Null for the rows that can match: a row that cannot is alone in its window partition
        # (no view row has one), and spread over the tasks by it rather than by its null key.
        F.when(~matchable, F.col(ROW)).alias(_ALONE),
    )
    order = Window.partitionBy(*slots, _ALONE).orderBy(
        F.col(_T), F.col(_SIDE), F.col(_C).asc_nulls_first(), F.col(_S)
    ).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    joined = (
        entity_rows.unionByName(view_rows, allowMissingColumns=True)
        .withColumn(_MATCH, F.last(_MATCH, ignorenulls=True).over(order))
        .where(F.col(_SIDE) == _ENTITY_ROW)
    )
    ttl = definition.ttl
    fresh = None
    if ttl is not None:  # inclusive: an event exactly one TTL old still counts
        micros = ttl // timedelta(microseconds=1)
        fresh = F.unix_micros(F.col(f"{_MATCH}.t")) >= F.unix_micros(F.col(TS)) - F.lit(micros)
    values = []
    for out in outputs:
        value = F.col(_MATCH).getField(out.feature)
        values.append((value if fresh is None else F.when(fresh, value)).alias(out.name))
    return joined.select(*[column(c) for c in carried], *values)
