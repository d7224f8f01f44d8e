"""Materializing an aggregation view: its tiles, computed by DuckDB, one value per entity and group.

Each run computes the tiles an entity needs from the offline table (deduplicated events, the
same as training sets read) and replaces the entity's values outright: tiles are a function
of the events alone, so there is nothing to merge and no newer value to keep. An incremental
run recomputes only the entities with new rows since the last run (and those whose rows a
changed source file took away). A group's value expires when its newest tile leaves the
longest window; the lifetime group's never does.

A group's query holds every event of its tiles in memory (its ``list`` aggregates do not
spill), so the entities are split into buckets by a hash of their join keys, enough that each
bucket's events fit in DuckDB's memory limit (``_bucket_count``), and each bucket is queried
and written in turn: one bucket, one query, when they fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.catalog import table_exists
from featurestore.definitions import Aggregation, FeatureView, Field
from featurestore.definitions.types import FLOATS
from featurestore.offline import sketch
from featurestore.offline.aggregations import events_sql
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ, retracted_table, view_table
from featurestore.online.codec import timestamps_us
from featurestore.online.keys import encode_keys
from featurestore.online.store import OnlineStore
from featurestore.online.tile_codec import TileCodec
from featurestore.online.tiles import STATES, TILES, TileGroup, tile_groups
from featurestore.storage import quote

BATCH_ROWS = 20_000
_TILE = "__tile"
LAST_TILE = "__last_tile"  # per entity and group: its newest tile, which sets the expiry
EVENTS = "__events"  # per entity and group: the events in its tiles
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What a group's query holds per event read, in bytes, to size its buckets: a base (the
# deduplication window's, the scan's) and as much again for each value it lists per event (a
# tile's events in time order, a count_distinct's values: list aggregates). Calibrated at
# medium, with a margin, from the smallest memory_limit each group of the example's
# driver_trips completed under (RESULTS.md, "Tiles under a memory limit"). A bucket may take
# BUCKET_SHARE of the limit: the rest is for the spilling sort and other threads' pages.
BYTES_PER_EVENT = 8
BYTES_PER_LISTED = 32
BUCKET_SHARE = 0.5

Progress = Callable[[str, int, int], None]


@dataclass
class TileCounts:
    rows_read: int = 0  # events read: those in the widest group's tiles (it holds the others')
    entities: int = 0  # values written (entity x group)
    corrected: int = 0  # entities whose rows were taken away, rewritten or removed


def write_tiles(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    end: datetime,
    changed_since: tuple[datetime, datetime | None] | None,
    retracted: bool,
    writer: OnlineStore,
    run_id: int,
    now: datetime,
    progress: Progress | None = None,
) -> TileCounts:
    """Write the tiles of ``view``'s events before ``end`` that a lookup from ``now`` on may
    combine. ``changed_since`` (watermark, last run's start): only entities with rows newer
    than the watermark or ingested since that run; ``retracted``: also the entities listed in
    the view's retractions, whose keys are removed where no event is left. A ``changed_since``
    without a last run (an explicit ``--start``): entities with rows from the watermark on."""
    counts = TileCounts()
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    only: list[str] = []
    params: list[object] = []
    if changed_since is not None:
        watermark, last_run = changed_since
        late = ""
        if last_run is not None:  # late rows: older event times, in files ingested since
            late = (
                f" OR {FILE_ID} IN (SELECT file_id FROM {quote(project)}.offline_files "
                "WHERE view = ? AND ingested_at >= ?)"
            )
        changed = f"SELECT {keys} FROM {view_table(project, view.name)} WHERE {EVENT_TS} >= ?{late}"
        only.append(f"({keys}) IN ({changed})")
        params += [watermark] if last_run is None else [watermark, view.name, last_run]
    retractions = f"(SELECT DISTINCT {keys} FROM {retracted_table(project, view.name)})"
    if retracted and changed_since is not None:
        only = [f"({only[0]} OR ({keys}) IN {retractions})"]
    now_us = (now - _EPOCH) // timedelta(microseconds=1)
    written: set[str] = set()
    for group in tile_groups(view):
        codec = group_codec(group)
        if progress:
            progress(group.key_name, 0, 0)
        events = 0
        for what, batch in _group_batches(con, project, view, group, end, now_us, only, params):
            n = batch.num_rows
            key_list, values, expire_at = encode_group_rows(project, view, group, codec, batch, run_id)
            writer.replace(key_list, values, expire_at)
            if retracted:
                written.update(key_list)
            counts.entities += n
            events += int(sum(batch.column(EVENTS).to_pylist()))
            if progress:
                progress(what, counts.entities, counts.entities)
        counts.rows_read = max(counts.rows_read, events)
    if retracted:
        counts.corrected = _remove_emptied(con, project, view, retractions, written, writer)
    return counts


def group_codec(group: TileGroup) -> TileCodec:
    """The codec of a group's values: one row of its ``fields`` (tile_codec.py)."""
    return TileCodec(group)


def group_row_schema(view: FeatureView, group: TileGroup) -> pa.Schema:
    """A group's rows as both engines compute them, one per entity (``encode_group_rows`` reads them)."""
    return pa.schema(
        [pa.field(k.name, k.dtype.arrow) for k in view.join_keys]
        + [
            pa.field(EVENT_TS, pa.timestamp("us", tz="UTC")),
            pa.field(LAST_TILE, pa.int64()),
            pa.field(EVENTS, pa.int64()),
        ]
        + [pa.field(f.name, f.dtype.arrow) for f in group.fields]
    )


def encode_group_rows(
    project: str, view: FeatureView, group: TileGroup, codec: TileCodec, batch: pa.RecordBatch, run_id: int
) -> tuple[list[str], list[bytes], list[int]]:
    """Keys, values and absolute expiries (ms, 0 for none) of a batch of a group's rows."""
    n = batch.num_rows
    key_list = encode_keys(
        project, group.key_name, [(k.name, batch.column(k.name)) for k in view.join_keys]
    ).to_pylist()
    event_us = timestamps_us(batch.column(EVENT_TS))
    values = codec.encode(batch, event_us, run_id)
    if group.hop_us is None:
        expire_at = [0] * n
    else:  # when the newest tile has left the longest window: every window is empty
        last = batch.column(LAST_TILE).to_numpy()
        expire_at = ((last + group.span) * group.hop_us // 1000 + 1000).tolist()
    return key_list, values.to_pylist(), expire_at


def _remove_emptied(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    retractions: str,
    written: set[str],
    writer: OnlineStore,
) -> int:
    """Delete the values of retracted entities that this run did not rewrite; how many entities."""
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    every = con.sql(f"SELECT {keys} FROM {retractions}").to_arrow_table()
    columns = [(k.name, every.column(k.name)) for k in view.join_keys]
    gone: list[str] = []
    for group in tile_groups(view):
        gone += [k for k in encode_keys(project, group.key_name, columns).to_pylist() if k not in written]
    for i in range(0, len(gone), BATCH_ROWS):
        writer.delete(gone[i : i + BATCH_ROWS])
    return every.num_rows


def write_entity_tiles(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    keys: pa.Table,
    pending: pa.Table | None,
    end: datetime,
    writer: OnlineStore,
    run_id: int,
    now: datetime,
) -> set[str]:
    """Write the tiles of the entities in ``keys`` (join key columns) as ``write_tiles`` would,
    from their rows in the view's table plus ``pending`` (rows laid out as the table, not
    ingested yet: a push's, see push_tiles.py); the Redis keys written. An entity with no
    event a lookup from ``now`` on may combine in a group keeps that group's stored value:
    none of its events could change it."""
    names = [quote(k.name) for k in view.join_keys]
    key_list = ", ".join(names)
    con.register("__entity_keys", keys)
    if len(names) == 1:
        wanted = f"{names[0]} IN (SELECT {names[0]} FROM __entity_keys)"
    else:
        wanted = f"({key_list}) IN (SELECT ({key_list}) FROM __entity_keys)"
    columns = ", ".join(quote(f.name) for f in view.columns)
    laid_out = f"{key_list}, {EVENT_TS}, {CREATED_TS}, {SEQ}, {columns}"
    parts = []
    if table_exists(con, project, "offline_" + view.name):
        parts.append(f"SELECT {laid_out} FROM {view_table(project, view.name)} WHERE {wanted}")
    if pending is not None:
        con.register("__pending_rows", pending)
        parts.append(f"SELECT {laid_out} FROM __pending_rows WHERE {wanted}")
    if not parts:
        return set()
    con.execute(f"CREATE OR REPLACE TEMP TABLE __entity_events AS {' UNION ALL '.join(parts)}")
    now_us = (now - _EPOCH) // timedelta(microseconds=1)
    written: set[str] = set()
    for group in tile_groups(view):
        codec = group_codec(group)
        for _, batch in _group_batches(con, project, view, group, end, now_us, [], [], "__entity_events"):
            encoded = encode_group_rows(project, view, group, codec, batch, run_id)
            writer.replace(*encoded)
            written.update(encoded[0])
    con.execute("DROP TABLE __entity_events")
    return written


def _group_batches(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    group: TileGroup,
    end: datetime,
    now_us: int,
    only: list[str],
    params: list[object],
    relation: str | None = None,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """A group's rows (``group_row_schema``), one per entity, bucket by bucket, each with what
    to report to a progress bar (the group's key name, and the bucket when there are several)."""
    where, where_params = _group_where(group, end, now_us, only)
    relation_rows = relation or view_table(project, view.name)
    buckets = _bucket_count(con, relation_rows, where, where_params + params, _bytes_per_event(group))
    for bucket in range(buckets):
        what = group.key_name if buckets == 1 else f"{group.key_name}: bucket {bucket + 1}/{buckets}"
        sql, group_params = _group_sql(project, view, group, end, now_us, only, relation, (bucket, buckets))
        with con.sql(sql, params=group_params + params).to_arrow_reader(BATCH_ROWS) as reader:
            for batch in _entity_batches(reader, view):  # a bucket's own (keys, tile) order
                yield what, batch


def _bucket_count(
    con: duckdb.DuckDBPyConnection, relation: str, where: list[str], params: list[object], per_event: int
) -> int:
    """How many buckets of entities a group's query needs so that each holds at most
    ``BUCKET_SHARE`` of DuckDB's memory limit: from the rows in the group's tile range (every
    version of an event: an upper bound, one scan) at ``per_event`` bytes each."""
    [(rows,)] = con.execute(f"SELECT count(*) FROM {relation} WHERE {' AND '.join(where)}", params).fetchall()
    [(limit,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    share = max(1, int(_size_bytes(str(limit)) * BUCKET_SHARE))
    return max(1, -(-int(rows) * per_event // share))


def _bytes_per_event(group: TileGroup) -> int:
    """``BYTES_PER_EVENT`` plus ``BYTES_PER_LISTED`` per value the group's query lists per event."""
    parts = _TileParts()
    for a, column in zip(group.aggregations, group.columns, strict=True):
        _state_sql(a, column, parts)
    listed = len(parts.ordered) + 1 if parts.ordered else 0  # the time, then each ordered column
    listed += sum(expr.startswith("list(") for expr in parts.aggregates)
    return BYTES_PER_EVENT + BYTES_PER_LISTED * listed


_UNITS = {"": 1, "B": 1, "BYTES": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _size_bytes(text: str) -> int:
    """DuckDB's rendering of a size (``current_setting('memory_limit')``: '488.2 MiB') in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).upper() not in _UNITS:
        raise ValueError(f"unexpected DuckDB memory_limit {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _group_where(
    group: TileGroup, end: datetime, now_us: int, only: list[str]
) -> tuple[list[str], list[object]]:
    """The conditions on the view's rows that a group's tiles read (``only``'s parameters,
    the caller's, follow the ones returned)."""
    where = [f"{EVENT_TS} < ?"]
    params: list[object] = [end]
    if group.hop_us is not None:
        # The oldest tile a lookup from now on may combine: J - span + 1 for J = the tile of now.
        oldest = group.tile_of(now_us) - group.span + 1
        where.append(f"{EVENT_TS} > ?")
        params.append(_EPOCH + timedelta(microseconds=(oldest - 1) * group.hop_us))
    return where + only, params


def _group_sql(
    project: str,
    view: FeatureView,
    group: TileGroup,
    end: datetime,
    now_us: int,
    only: list[str],
    relation: str | None = None,
    bucket: tuple[int, int] = (0, 1),
) -> tuple[str, list[object]]:
    """One row per entity and tile, in (keys, tile) order: the tile, its newest event time and
    event count, and each state of it (a ``values`` state as the tile's list), named after the
    group's fields; ``_entity_batches`` makes them one row per entity. ``bucket`` (b, n): only
    the entities whose join keys hash to b modulo n."""
    keys = [quote(k.name) for k in view.join_keys]
    where, params = _group_where(group, end, now_us, only)
    if bucket[1] > 1:
        where.append(f"hash({', '.join(keys)}) % {bucket[1]} = {bucket[0]}")
    if group.hop_us is None:
        tile = "0"
    else:
        us, hop = f"epoch_us({EVENT_TS})", group.hop_us
        tile = f"(CASE WHEN {us} >= 0 THEN ({us} + {hop - 1}) // {hop} ELSE -((-{us}) // {hop}) END)"
    used = list(dict.fromkeys(group.columns))
    events = events_sql(project, view, used, " AND ".join(where), relation)
    # The tiles come out flat and sorted, and are put into each entity's lists by Arrow
    # offsets (``_entity_batches``): a sort of the tiles instead of an ordered list aggregate
    # of structs per entity (the same lists, about half the query's time).
    tile_parts = _TileParts()
    outer = [f"{_TILE}::BIGINT AS {quote(TILES)}"]
    fields = iter(group.fields[1:])  # each aggregation's state lists, in STATES order
    for a, column in zip(group.aggregations, group.columns, strict=True):
        states = _state_sql(a, column, tile_parts)
        for suffix, _ in STATES[a.function]:
            field = next(fields)
            item = field.dtype.duckdb[:-2]  # List(X) -> X's type
            if suffix == "counts":  # last_n, count_distinct: the length of each tile's values
                outer.append(f"len({states['values']})::{item} AS {quote(field.name)}")
            elif suffix == "values":  # a list per tile: _entity_batches flattens them in tile order
                outer.append(f"({states['values']})::{item}[] AS {quote(field.name)}")
            else:
                outer.append(f"({states[suffix]})::{item} AS {quote(field.name)}")
    key_list = ", ".join(keys)
    aggregates = [f"{expr} AS {alias}" for expr, alias in tile_parts.aggregates.items()]
    if tile_parts.ordered:  # one list of each tile's events, sorted by time after the GROUP BY
        struct = ", ".join([f"'ts': {EVENT_TS}"] + [f"'{f}': {e}" for e, f in tile_parts.ordered.items()])
        aggregates.append(f"list({{{struct}}}) AS __ev")
    tiles = (
        f"SELECT {key_list}, {tile} AS {_TILE}, max({EVENT_TS}) AS __newest, count(*) AS __n"
        f"{''.join(', ' + x for x in aggregates)} FROM ({events}) GROUP BY {key_list}, {_TILE}"
    )
    if tile_parts.ordered:
        tiles = f"SELECT * REPLACE (list_sort(__ev) AS __ev) FROM ({tiles})"
    sql = f"SELECT {key_list}, __newest, __n, {', '.join(outer)} FROM ({tiles}) ORDER BY {key_list}, {_TILE}"
    return sql, params


def _entity_batches(reader: pa.RecordBatchReader, view: FeatureView) -> Iterator[pa.RecordBatch]:
    """``_group_sql``'s tiles (sorted by keys, then tile) as one row per entity, in
    ``group_row_schema`` layout: each state's items of an entity are consecutive rows, so its
    lists are the same columns cut by the entities' row offsets. An entity's tiles may span
    batches: the last entity of a batch waits for the next one."""
    keys = [k.name for k in view.join_keys]
    pending: pa.Table | None = None
    for batch in reader:
        table = pa.Table.from_batches([batch])
        if pending is not None:
            table = pa.concat_tables([pending, table])
        if not table.num_rows:
            continue
        table = table.combine_chunks()
        starts = _entity_starts(table, keys)
        last = int(starts[-1])
        if last:
            yield _entity_rows(table.slice(0, last), starts[:-1], keys)
        pending = table.slice(last)
    if pending is not None and pending.num_rows:
        pending = pending.combine_chunks()
        yield _entity_rows(pending, _entity_starts(pending, keys), keys)


def _entity_starts(table: pa.Table, keys: list[str]) -> np.ndarray:
    """The rows where a new entity begins (the first row, then wherever a key changes; two
    nulls are the same key, as GROUP BY has it)."""
    n = table.num_rows
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for name in keys:
        column = table.column(name)
        after, before = column.slice(1), column.slice(0, n - 1)
        same = pc.or_kleene(
            pc.fill_null(pc.equal(after, before), False),
            pc.and_(pc.is_null(after), pc.is_null(before)),
        )
        change[1:] |= ~same.to_numpy(zero_copy_only=False)
    return np.flatnonzero(change)


def _entity_rows(table: pa.Table, starts: np.ndarray, keys: list[str]) -> pa.RecordBatch:
    """Whole entities' tile rows (``starts``: where each begins) as one row per entity."""
    n = table.num_rows
    offsets = np.append(starts, n).astype(np.int32)
    cut = pa.array(offsets, pa.int32())
    first = pa.array(starts)
    columns: dict[str, pa.Array] = {k: table.column(k).chunk(0).take(first) for k in keys}
    newest = table.column("__newest").chunk(0)
    stamps = np.maximum.reduceat(newest.cast(pa.int64()).to_numpy(zero_copy_only=False), starts)
    columns[EVENT_TS] = pa.array(stamps, pa.int64()).cast(newest.type)
    columns[CREATED_TS] = pa.nulls(len(starts), pa.timestamp("us", tz="UTC"))
    tiles = table.column(TILES).chunk(0)
    columns[LAST_TILE] = tiles.take(pa.array(offsets[1:] - 1))
    events = np.add.reduceat(table.column("__n").chunk(0).to_numpy(zero_copy_only=False), starts)
    columns[EVENTS] = pa.array(events, pa.int64())
    for name in table.column_names[len(keys) + 2 :]:
        column = table.column(name).chunk(0)
        if pa.types.is_list(column.type):  # a tile's values: an entity's are its tiles' in order
            inner = column.offsets.to_numpy()
            columns[name] = pa.ListArray.from_arrays(pa.array(inner[offsets], pa.int32()), column.values)
        else:
            columns[name] = pa.ListArray.from_arrays(cut, column)
    return pa.RecordBatch.from_pydict(columns)


class _TileParts:
    """What a group's states are computed from, per tile: aggregates (expression -> alias),
    and the columns read from its events in time order (expression -> struct field)."""

    def __init__(self) -> None:
        self.aggregates: dict[str, str] = {}
        self.ordered: dict[str, str] = {}

    def aggregate(self, expr: str) -> str:
        return self.aggregates.setdefault(expr, f"__a{len(self.aggregates)}")

    def in_order(self, expr: str) -> str:
        """``expr`` of the tile's events, oldest first (a list with an item per event)."""
        field = self.ordered.setdefault(expr, f"c{len(self.ordered)}")
        return f"list_transform(__ev, lambda e: e.{field})"


def _state_sql(a: Aggregation, column: Field, tile: _TileParts) -> dict[str, str]:
    """Each state part of ``a`` over one tile's events, by ``STATES`` suffix (a ``counts``
    part is the length of ``values``, taken by the caller)."""
    x, ts, f = quote(a.column), EVENT_TS, a.function
    # Float states add in event-time order: the tile's events are listed, then sorted by time
    # (event times are unique per entity), then summed; a parallel aggregate's order varies
    # between runs, and with it the last bits of the value (same data, same bytes). Sorting
    # each tile's list is faster than DuckDB's ordered aggregates (list(x ORDER BY t)).
    if f == "count":
        return {"count": tile.aggregate(f"count({x})")}
    if f == "sum":
        if column.dtype.name in FLOATS:
            return {"sum": f"list_sum({tile.in_order(x + '::DOUBLE')})"}
        return {"sum": tile.aggregate(f"sum({x})::BIGINT")}
    if f == "mean":
        return {"sum": f"list_sum({tile.in_order(x + '::DOUBLE')})", "count": tile.aggregate(f"count({x})")}
    if f in ("variance", "stddev"):
        values, count = tile.in_order(x + "::DOUBLE"), tile.aggregate(f"count({x})")
        # m2: the sum of squared deviations from the mean
        return {"count": count, "mean": f"list_avg({values})", "m2": f"list_var_pop({values}) * {count}"}
    if f in ("min", "max"):
        return {"value": tile.aggregate(f"{f}({x})")}
    if f in ("first", "last"):
        return {"value": tile.aggregate(f"{'arg_min' if f == 'first' else 'arg_max'}({x}, {ts})")}
    if f == "last_n":  # newest first: the time-sorted values reversed (no two share a time)
        present = f"list_filter({tile.in_order(x)}, lambda v: v IS NOT NULL)"
        return {"values": f"list_reverse({present})[1:{a.n}]"}
    if f == "count_distinct":  # sorted, -0.0 as 0.0: the same bytes on every engine and run
        v = f"(CASE WHEN {x} = 0 THEN 0 ELSE {x} END)" if column.dtype.name in FLOATS else x
        return {"values": f"list_sort(list_distinct({tile.aggregate(f'list({v})')}))"}  # no nulls
    if f == "approx_count_distinct":  # the tile's sketch: its k smallest distinct hashes, ascending
        # hashed where the value is present (a null hashes too), NULL for a tile of nulls only
        hashes = tile.aggregate(f"list({sketch.hash_sql(x, column.dtype)}) FILTER (WHERE {x} IS NOT NULL)")
        return {"values": f"list_sort(list_distinct(coalesce({hashes}, [])))[1:{a.k}]"}
    raise ValueError(f"no tile states for function {f!r}")
