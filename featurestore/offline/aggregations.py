"""Aggregation features at each entity row, exactly, as DuckDB SQL for the point-in-time join.

Per aggregation view, the entity rows and the view's events go into one stream, partitioned
by join keys and ordered by time, and DuckDB's window aggregates (segment trees, so
O(n log n), never a rescan per row) evaluate each aggregation over the frame
``RANGE BETWEEN window - 1 µs PRECEDING AND CURRENT ROW``: times are microseconds, so the
frame at an entity row is (t - window, t], peers at t included. Entity rows add no values
(their columns are NULL, which every aggregate skips).

``last_n`` is not a window aggregate (a list per frame would copy every event of the window
into every row): each entity row counts the non-null values up to its time, k, and joins
the events ranked k - n + 1 .. k, O(n) per row.

``approx_count_distinct`` counts each window's distinct hashes (offline/sketch.py) as a window
aggregate: below k that is the value; the rows with more join their window's smallest hashes
for the kth (``_kth_smallest``).

Events are deduplicated first: rows sharing join keys and event time are versions of one
event, and the newest created (then the last ingested) wins, as in every view's as-of join.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from featurestore.definitions import Aggregation, FeatureView, Field
from featurestore.definitions.types import FLOATS
from featurestore.offline import sketch
from featurestore.offline.entities import ENTITY_VIEW, ROW, TS
from featurestore.offline.layout import CREATED_TS, EVENT_TS, SEQ, view_table
from featurestore.storage import quote

_T = "__agg_t"  # the stream's time: entity time or event time
_EVENT = "__agg_event"  # true for events, false for entity rows
_RANK = "__agg_rank"  # a last_n column's events, numbered in time order per key
ZERO_WHEN_EMPTY = frozenset({"count", "count_distinct", "approx_count_distinct"})


@dataclass(frozen=True)
class AggregationSQL:
    """A view's aggregations at the entity rows: CTEs to prepend and the relation to join on ROW."""

    ctes: list[str]
    relation: str


def aggregation_sql(project: str, view: FeatureView, features: Sequence[Field], alias: str) -> AggregationSQL:
    """Columns ROW and each feature in ``features`` (aggregation names) for every entity row
    with non-null keys and time; rows absent from the relation have empty windows."""
    wanted = {f.name for f in features}
    aggs = [a for a in view.aggregations if a.name in wanted]
    keys = [quote(k.name) for k in view.join_keys]
    columns = {f.name: f for f in view.columns}
    used = sorted({a.column for a in aggs})
    events = f"{alias}_events"
    chosen = events_sql(project, view, [columns[c] for c in used], _asked_for(keys))
    ctes = [f"{events} AS MATERIALIZED ({chosen})"]

    key_types = {k.name: k.dtype.duckdb for k in view.join_keys}
    entity_cols = [f"CAST(e.{quote(k)} AS {t}) AS {quote(k)}" for k, t in key_types.items()]
    not_null = " AND ".join([f"e.{quote(k)} IS NOT NULL" for k in key_types] + [f"e.{TS} IS NOT NULL"])
    nulls = [f"NULL::{_stream_type(columns[c])} AS {quote(c)}" for c in used]
    stream = (
        f"SELECT {', '.join(entity_cols)}, e.{TS} AS {_T}, e.{ROW} AS {ROW}, false AS {_EVENT}"
        f"{''.join(', ' + n for n in nulls)} FROM {ENTITY_VIEW} e WHERE {not_null} "
        f"UNION ALL "
        f"SELECT {', '.join(keys)}, {EVENT_TS} AS {_T}, NULL AS {ROW}, true AS {_EVENT}"
        f"{''.join(', ' + quote(c) for c in used)} FROM {events}"
    )
    windows: dict[timedelta | None, str] = {}
    selects = [ROW, *keys, _T]
    for i, a in enumerate(aggs):
        w = windows.setdefault(a.window, f"w{len(windows)}")
        if a.function == "last_n":
            # Non-null values up to t (peers included): the rank of the newest one in the window.
            selects.append(f"count({quote(a.column)}) OVER wlife AS __k{i}")
        elif a.function == "approx_count_distinct":
            hashed = sketch.hash_sql(quote(a.column), columns[a.column].dtype)
            selects.append(f"count(DISTINCT {hashed}) OVER {w} AS __d{i}")
        else:
            selects.append(f"{_window_aggregate(a, columns[a.column], w)} AS {quote(a.name)}")
    clauses = [f"{w} AS ({_frame(keys, window)})" for window, w in windows.items()]
    clauses.append(f"wlife AS ({_frame(keys, None)})")
    at_rows = f"{alias}_rows"
    ctes.append(
        f"{at_rows} AS (SELECT {', '.join(selects)} FROM ({stream}) "
        f"WINDOW {', '.join(clauses)} QUALIFY NOT {_EVENT})"
    )
    outs = [f"r.{ROW} AS {ROW}"]
    joins: list[str] = []
    for i, a in enumerate(aggs):
        if a.function == "approx_count_distinct":
            assert a.k is not None
            kth = f"{alias}_kth{i}"
            ctes += _kth_smallest(a, columns[a.column], i, keys, events, at_rows, kth)
            joins.append(f"LEFT JOIN {kth} s{i} ON s{i}.{ROW} = r.{ROW}")
            outs.append(f"{sketch.estimate_sql(f'coalesce(r.__d{i}, 0)', f's{i}.h', a.k)} AS {quote(a.name)}")
            continue
        if a.function != "last_n":
            outs.append(f"r.{quote(a.name)}")
            continue
        ranked = f"{alias}_ranked{i}"
        ctes.append(
            f"{ranked} AS (SELECT {', '.join(keys)}, {EVENT_TS}, {quote(a.column)}, "
            f"row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY {EVENT_TS}) AS {_RANK} "
            f"FROM {events} WHERE {quote(a.column)} IS NOT NULL)"
        )
        in_window = "" if a.window is None else f"AND {_after_start('ev', 'u', a.window)} "
        on_keys = " AND ".join(f"ev.{k} = u.{k}" for k in keys)
        n = a.n
        ctes.append(
            f"{ranked}_at AS (SELECT u.{ROW}, list(ev.{quote(a.column)} ORDER BY ev.{_RANK} DESC) AS v "
            f"FROM (SELECT {ROW}, {', '.join(keys)}, {_T}, "
            f"unnest(range(greatest(__k{i} - {n}, 0) + 1, __k{i} + 1)) AS {_RANK} FROM {at_rows}) u "
            f"JOIN {ranked} ev ON {on_keys} AND ev.{_RANK} = u.{_RANK} {in_window}"
            f"GROUP BY u.{ROW})"
        )
        joins.append(f"LEFT JOIN {ranked}_at l{i} ON l{i}.{ROW} = r.{ROW}")
        outs.append(f"l{i}.v AS {quote(a.name)}")
    relation = f"(SELECT {', '.join(outs)} FROM {at_rows} r {' '.join(joins)})"
    return AggregationSQL(ctes, relation)


def _kth_smallest(
    a: Aggregation, column: Field, i: int, keys: list[str], events: str, at_rows: str, kth: str
) -> list[str]:
    """CTEs ending in ``kth`` (ROW, h): the kth smallest distinct hash of the window of each
    entity row whose window holds at least k distinct ones (offline/sketch.py).

    A sketch per row as a window aggregate would hold k hashes for every event too; instead
    the rows that need one join their window's events, only those whose hash is below
    2^(63 - j), j chosen from the row's distinct count d so that about 2k to 4k pass
    (d / 2^j >= 2k): O(k) per such row, sorted and spilled like any join. Should fewer than k
    pass (a chance of about e^-250), the row joins every hash of its window instead, so the
    result never depends on the guess."""
    k = a.k
    assert k is not None
    hashed, need = f"{kth}_hashed", f"{kth}_need"
    on_keys = " AND ".join(f"e.{key} = n.{key}" for key in keys)
    in_window = f"e.{EVENT_TS} <= n.{_T}"
    if a.window is not None:
        in_window += f" AND {_after_start('e', 'n', a.window)}"

    def ranked(name: str, rows: str, below: str) -> str:
        # the window's distinct hashes below the threshold, numbered from the smallest
        return (
            f"{name} AS (SELECT {ROW}, h FROM (SELECT {ROW}, h, row_number() OVER "
            f"(PARTITION BY {ROW} ORDER BY h) AS __n FROM (SELECT DISTINCT n.{ROW}, e.h FROM {rows} n "
            f"JOIN {hashed} e ON {on_keys} AND {in_window}{below})) WHERE __n = {k})"
        )

    h = sketch.hash_sql(quote(a.column), column.dtype)
    j = f"greatest(0, floor(log2(__d{i}::DOUBLE / {2 * k})))::INTEGER"
    return [
        f"{hashed} AS (SELECT {', '.join(keys)}, {EVENT_TS}, {h} AS h "
        f"FROM {events} WHERE {quote(a.column)} IS NOT NULL)",
        f"{need} AS (SELECT {ROW}, {', '.join(keys)}, {_T}, {j} AS j FROM {at_rows} WHERE __d{i} >= {k})",
        ranked(f"{kth}_guessed", need, " AND e.h >> (63 - n.j) = 0"),
        ranked(
            f"{kth}_rest",
            f"(SELECT * FROM {need} WHERE {ROW} NOT IN (SELECT {ROW} FROM {kth}_guessed))",
            "",
        ),
        f"{kth} AS (SELECT * FROM {kth}_guessed UNION ALL SELECT * FROM {kth}_rest)",
    ]


def empty_value(aggregation: Aggregation) -> str:
    """SQL for the feature of an entity row whose window holds no events."""
    return "0" if aggregation.function in ZERO_WHEN_EMPTY else "NULL"


def events_sql(
    project: str,
    view: FeatureView,
    columns: Sequence[Field],
    where: str | None = None,
    relation: str | None = None,
) -> str:
    """One row per event (keys, event time, ``columns``): the newest version (created time,
    then ingestion order) of each (keys, event time), with NaN read as null. ``where``: a
    condition on the view's rows (the same for every version of an event); ``relation``: rows
    laid out as the view's table to read instead of it (a push's, see online/push_tiles.py)."""
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    cols = [
        f"CASE WHEN isnan({quote(c.name)}) THEN NULL ELSE {quote(c.name)}::DOUBLE END AS {quote(c.name)}"
        if c.dtype.name in FLOATS
        else quote(c.name)
        for c in columns
    ]
    return (
        f"SELECT {keys}, {EVENT_TS}{''.join(', ' + c for c in cols)} "
        f"FROM {relation or view_table(project, view.name)} {'' if where is None else 'WHERE ' + where} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys}, {EVENT_TS} "
        f"ORDER BY {CREATED_TS} DESC NULLS LAST, {SEQ} DESC) = 1"
    )


def _asked_for(keys: list[str]) -> str:
    """Only the keys some entity row asks for."""
    if len(keys) == 1:
        return f"{keys[0]} IN (SELECT e.{keys[0]} FROM {ENTITY_VIEW} e)"
    return f"({', '.join(keys)}) IN (SELECT ({', '.join('e.' + k for k in keys)}) FROM {ENTITY_VIEW} e)"


def _stream_type(column: Field) -> str:
    """Floats are aggregated as DOUBLE (a Float32 sum in FLOAT would round at every step)."""
    return "DOUBLE" if column.dtype.name in FLOATS else column.dtype.duckdb


def _after_start(event: str, row: str, window: timedelta) -> str:
    """SQL: event ``event`` is after the start of the window ending at entity row ``row``."""
    return f"{event}.{EVENT_TS} > {row}.{_T} - to_microseconds({window // timedelta(microseconds=1)})"


def _frame(keys: list[str], window: timedelta | None) -> str:
    start = "UNBOUNDED PRECEDING"
    if window is not None:
        start = f"to_microseconds({window // timedelta(microseconds=1) - 1}) PRECEDING"
    return f"PARTITION BY {', '.join(keys)} ORDER BY {_T} RANGE BETWEEN {start} AND CURRENT ROW"


def _window_aggregate(a: Aggregation, column: Field, window: str) -> str:
    c, over = quote(a.column), f"OVER {window}"
    return {
        "count": f"count({c}) {over}",
        "count_distinct": f"count(DISTINCT {c}) {over}",
        # integers: exact (HUGEINT inside), and an overflow of BIGINT is an error, not a wrap
        "sum": f"sum({c}) {over}" if column.dtype.name in FLOATS else f"CAST(sum({c}) {over} AS BIGINT)",
        "mean": f"avg({c}::DOUBLE) {over}",
        "min": f"min({c}) {over}",
        "max": f"max({c}) {over}",
        "variance": f"var_samp({c}::DOUBLE) {over}",
        "stddev": f"stddev_samp({c}::DOUBLE) {over}",
        "first": f"arg_min({c}, {_T}) {over}",
        "last": f"arg_max({c}, {_T}) {over}",
    }[a.function]
