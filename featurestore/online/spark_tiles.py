"""Materializing an aggregation view on Spark: ``tile_writer.py``'s tiles, computed on the
cluster from the view's live warehouse folders and written to Redis by the executors.

The same rows as DuckDB's query, group by group: events before the end (and, for a hop
group, after the oldest tile a lookup from now on may combine), of the entities the run
rewrites, deduplicated (newest created, nulls oldest, then last ingested); one row of
partial states per (entity, tile), then one row per entity with its tiles in order. The
states are tile_writer's: integer sums exact (decimal, an error past Int64), ``first`` and
``last`` the values of the oldest and newest events with one, ``last_n`` newest first,
``count_distinct`` sorted with -0.0 as 0.0. Float states (sums, means, moments) equal
DuckDB's within rounding: each engine adds a tile's values in its own order.

Each task encodes its rows with tile_writer's ``encode_group_rows`` and replaces the values
outright, as the DuckDB engine does. A run with retractions joins the retracted keys to each
group's rows: a retracted entity with no row left in a group has that group's value deleted
by the task that holds it. Only counts come back to the driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.definitions import Aggregation, FeatureView, Field
from featurestore.definitions.types import FLOATS
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.spark.aggregations import distinct_value, event_value, exact_long
from featurestore.offline.spark.warehouse import stored_schema
from featurestore.online.keys import encode_keys
from featurestore.online.spark_materialize import carried_errors
from featurestore.online.store import OnlineStore
from featurestore.online.tile_writer import (
    EVENTS,
    LAST_TILE,
    TileCounts,
    encode_group_rows,
    group_codec,
    group_row_schema,
)
from featurestore.online.tiles import STATES, TILES, TileGroup, tile_groups

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from featurestore.online.tile_writer import Progress

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TILE, _US, _NEWEST, _N, _SORTED = "__fs_tile", "__fs_us", "__fs_newest", "__fs_n", "__fs_tiles"
_RANK = "__fs_rank"
_COUNTS = ("entities", "rows_read")
_COUNTS_SCHEMA = ", ".join(f"{name} long" for name in _COUNTS)


@dataclass(frozen=True)
class TileTask:
    """What a task needs to write one group's rows, pickled to the executors."""

    redis_url: str
    project: str
    view: FeatureView
    group: TileGroup
    run_id: int


def write_tiles_on_spark(
    spark: SparkSession,
    con: duckdb.DuckDBPyConnection,
    project: str,
    redis_url: str,
    dirs: list[str],
    view: FeatureView,
    end: datetime,
    changed_since: tuple[datetime, datetime | None] | None,
    retracted: bool,
    run_id: int,
    now: datetime,
    progress: Progress | None = None,
) -> TileCounts:
    """``tile_writer.write_tiles`` on Spark (the same arguments; ``dirs``: the view's live folders)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    counts = TileCounts()
    keys = [k.name for k in view.join_keys]
    gone: DataFrame | None = None
    if retracted:
        every = OfflineStore(con, project).retracted_keys(view.name, keys)
        counts.corrected = every.num_rows
        if every.num_rows:
            every = every.cast(pa.schema([pa.field(k.name, k.dtype.arrow) for k in view.join_keys]))
            gone = spark.createDataFrame(every)
    schema = from_arrow_schema(stored_schema(view))
    rows = spark.read.schema(schema).parquet(*dirs) if dirs else spark.createDataFrame([], schema)
    only: DataFrame | None = None
    if changed_since is not None:
        watermark, last_run = changed_since
        changed = F.col(EVENT_TS) >= F.lit(watermark)
        if last_run is not None:  # late rows: older event times, in files ingested since
            late = OfflineStore(con, project).files_ingested_since(view.name, last_run)
            if late:
                changed = changed | F.col(FILE_ID).isin(late)
        only = rows.where(changed).select(*keys)
        if gone is not None:
            only = only.unionByName(gone)
    now_us = (now - _EPOCH) // timedelta(microseconds=1)
    for group in tile_groups(view):
        if progress:
            progress(group.key_name, 0, 0)
        values = group_rows(rows, view, group, end, now_us, only)
        if gone is not None:  # retracted entities without a row here: the task deletes their value
            values = values.join(gone, on=keys, how="full_outer")
        task = TileTask(redis_url, project, view, group, run_id)
        written = values.mapInArrow(partial(_write_partition, task=task), _COUNTS_SCHEMA)
        done = written.collect()  # one row per task: the driver never sees the values
        counts.entities += sum(int(r["entities"]) for r in done)
        # Events read: the widest group's (it holds the others'), as on DuckDB.
        counts.rows_read = max(counts.rows_read, sum(int(r["rows_read"]) for r in done))
        if progress:
            progress(group.key_name, counts.entities, counts.entities)
    return counts


def group_rows(
    rows: DataFrame, view: FeatureView, group: TileGroup, end: datetime, now_us: int, only: DataFrame | None
) -> DataFrame:
    """One row per entity with events in the group's range: ``tile_writer.group_row_schema``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_type

    keys = [k.name for k in view.join_keys]
    in_range = F.col(EVENT_TS) < F.lit(end)
    if group.hop_us is not None:
        # The oldest tile a lookup from now on may combine: J - span + 1 for J = the tile of now.
        oldest = group.tile_of(now_us) - group.span + 1
        after = _EPOCH + timedelta(microseconds=(oldest - 1) * group.hop_us)
        in_range = in_range & (F.col(EVENT_TS) > F.lit(after))
    events = rows.where(in_range)
    if only is not None:
        events = events.join(only.distinct(), on=keys, how="left_semi")
    newest_first = (F.col(CREATED_TS).desc_nulls_last(), F.col(SEQ).desc())
    versions = Window.partitionBy(*keys, EVENT_TS).orderBy(*newest_first)
    events = events.withColumn(_RANK, F.row_number().over(versions)).where(F.col(_RANK) == 1)
    columns = {f.name: f for f in view.columns}
    used = list(dict.fromkeys(group.columns))
    value = {c.name: f"__fs_v{i}" for i, c in enumerate(used)}
    if group.hop_us is None:
        tile = F.lit(0).cast("long")
    else:  # ceil(us / hop) in integers (a double would round near the bounds)
        hop = group.hop_us
        tile = F.expr(
            f"CASE WHEN {_US} >= 0 THEN ({_US} + {hop - 1}) div {hop} ELSE -((-{_US}) div {hop}) END"
        )
    events = events.select(
        *keys,
        F.col(EVENT_TS),
        *[event_value(columns[c.name]).alias(value[c.name]) for c in used],
        F.unix_micros(F.col(EVENT_TS)).alias(_US),
    ).withColumn(_TILE, tile)
    states: list[Column] = []
    for i, (a, column) in enumerate(zip(group.aggregations, group.columns, strict=True)):
        for suffix, expr in _states(a, column, F.col(value[a.column]), view.name).items():
            states.append(expr.alias(f"s{i}_{suffix}"))
    names = [f"s{i}_{suffix}" for i, a in enumerate(group.aggregations) for suffix, _ in STATES[a.function]]
    names = [n for n in names if not n.endswith("_counts")]  # the lengths of ``values``, taken after
    per_tile = events.groupBy(*keys, _TILE).agg(
        F.max(EVENT_TS).alias(_NEWEST), F.count(F.lit(1)).alias(_N), *states
    )
    per_entity = per_tile.groupBy(*keys).agg(
        F.max(_NEWEST).alias(EVENT_TS),
        F.max(_TILE).alias(LAST_TILE),
        F.sum(_N).alias(EVENTS),
        F.sort_array(F.collect_list(F.struct(_TILE, *names))).alias(_SORTED),
    )
    tiles = F.col(_SORTED)
    out = [F.transform(tiles, _field(_TILE)).alias(TILES)]
    fields = iter(group.fields[1:])  # each aggregation's state lists, in STATES order
    for i, a in enumerate(group.aggregations):
        for suffix, _ in STATES[a.function]:
            field = next(fields)
            if suffix == "counts":  # last_n, count_distinct: the length of each tile's values
                listed = F.transform(tiles, _size_of(f"s{i}_values"))
            elif suffix == "values":  # a list per tile: flattened, in tile order
                listed = F.flatten(F.transform(tiles, _field(f"s{i}_values")))
            else:
                listed = F.transform(tiles, _field(f"s{i}_{suffix}"))
            out.append(listed.cast(from_arrow_type(field.dtype.arrow)).alias(field.name))
    return per_entity.select(*keys, EVENT_TS, F.col(LAST_TILE).cast("long"), F.col(EVENTS).cast("long"), *out)


def _states(a: Aggregation, column: Field, x: Column, view: str) -> dict[str, Column]:
    """Each state part of ``a`` over one tile's events, by ``STATES`` suffix (tile_writer's)."""
    from pyspark.sql import functions as F

    double = x.cast("double")
    present = x.isNotNull()
    at = F.when(present, F.col(EVENT_TS))  # first, last: only events with a value
    if a.function == "sum":
        if column.dtype.name in FLOATS:
            return {"sum": F.sum(x)}
        return {"sum": exact_long(F.sum(x.cast("decimal(38,0)")), view, a)}
    if a.function in ("variance", "stddev"):  # the sum of squared deviations from the mean
        return {"count": F.count(x), "mean": F.avg(double), "m2": F.var_pop(double) * F.count(x)}
    if a.function == "last_n":
        event = F.struct(F.col(EVENT_TS).alias("t"), x.alias("v"))
        newest = F.sort_array(F.collect_list(F.when(present, event)), asc=False)
        return {"values": F.slice(F.transform(newest, _value_of), 1, a.n or 0)}
    if a.function == "count_distinct":
        return {"values": F.sort_array(F.collect_set(distinct_value(x, column)))}
    return {
        "count": lambda: {"count": F.count(x)},
        "mean": lambda: {"sum": F.sum(double), "count": F.count(x)},
        "min": lambda: {"value": F.min(x)},
        "max": lambda: {"value": F.max(x)},
        "first": lambda: {"value": F.min_by(x, at)},
        "last": lambda: {"value": F.max_by(x, at)},
    }[a.function]()


def _field(name: str) -> Callable[[Column], Column]:
    return lambda x: x[name]


def _size_of(name: str) -> Callable[[Column], Column]:
    from pyspark.sql import functions as F

    return lambda x: F.size(x[name])


def _value_of(event: Column) -> Column:
    return event["v"]


def _write_partition(batches: Iterator[pa.RecordBatch], task: TileTask) -> Iterator[pa.RecordBatch]:
    """On an executor: replace the values of one partition's entities, delete those of retracted
    entities without a row (no tiles); yield the counts."""
    view, group = task.view, task.group
    schema = group_row_schema(view, group)
    codec = group_codec(group)
    counts = dict.fromkeys(_COUNTS, 0)
    store: OnlineStore | None = None
    with carried_errors():
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                # Spark's Arrow types may differ from the stored ones (large strings, ns): cast back.
                rows = pa.Table.from_batches([batch.select(schema.names)]).cast(schema).combine_chunks()
                if store is None:
                    name = f"featurestore-materialize-run{task.run_id}-pid{os.getpid()}"
                    store = OnlineStore.connect(task.redis_url, task.project, client_name=name)
                has_tiles = rows.column(TILES).is_valid()
                emptied = rows.filter(pc.invert(has_tiles))
                if emptied.num_rows:
                    columns = [(k.name, emptied.column(k.name)) for k in view.join_keys]
                    store.delete(encode_keys(task.project, group.key_name, columns).to_pylist())
                for part in rows.filter(has_tiles).to_batches():
                    key_list, values, expire_at = encode_group_rows(
                        task.project, view, group, codec, part, task.run_id
                    )
                    store.replace(key_list, values, expire_at)
                    counts["entities"] += part.num_rows
                    counts["rows_read"] += int(pc.sum(part.column(EVENTS)).as_py() or 0)
        finally:
            if store is not None:
                store.close()
    yield pa.RecordBatch.from_pydict({name: [n] for name, n in counts.items()})
