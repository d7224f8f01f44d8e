"""The point-in-time join, as one DuckDB query of chained ASOF joins.

Per view, DuckDB's ASOF LEFT JOIN picks, for each entity row, the source row with equal
join keys and the greatest ordering key not after the entity's: the ordering key is the
struct (event time, created time, ingestion sequence), so the newest event wins, a tie is
won by the later created time, and a full tie by the row ingested last. A TTL then
nulls a match older than ``entity time - ttl`` (bounds inclusive, as in Feast). An entity
row with a null join key or time matches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from featurestore.offline.aggregations import aggregation_sql, empty_value
from featurestore.offline.entities import ENTITY_VIEW, ROW, TS
from featurestore.offline.layout import CREATED_TS, EVENT_TS, SEQ, view_table
from featurestore.registry import ViewRequest
from featurestore.storage import quote

_MAX_SEQ = 9223372036854775807


@dataclass(frozen=True)
class OutputColumn:
    """A feature column of the training set: its output name and where it comes from."""

    name: str
    view: str
    feature: str


def point_in_time_sql(
    project: str,
    entity_columns: Sequence[str],
    requests: Sequence[ViewRequest],
    outputs: Sequence[OutputColumn],
) -> str:
    """The training-set query over the registered entity view, in input order."""
    joins: list[str] = []
    ctes: list[str] = []
    selects = [f"e.{quote(c)}" for c in entity_columns]
    alias = {req.view.name: f"v{i}" for i, req in enumerate(requests)}
    for req in requests:
        v = alias[req.view.name]
        if req.view.aggregations:
            sql = aggregation_sql(project, req.view, req.features, v)
            ctes += sql.ctes
            joins.append(f"LEFT JOIN {sql.relation} {v} ON {v}.{ROW} = e.{ROW}")
            continue
        cols = ", ".join(quote(f.name) for f in req.features)
        keys = [quote(k.name) for k in req.view.join_keys]
        inner = (
            f"SELECT {', '.join(keys)}, {EVENT_TS}, "
            f"{{'t': {EVENT_TS}, 'c': coalesce({CREATED_TS}, '-infinity'::TIMESTAMPTZ), "
            f"'s': {SEQ}}} AS __ord, "
            f"{cols} FROM {view_table(project, req.view.name)}"
        )
        on = [f"e.{k} = {v}.{k}" for k in keys]
        # DuckDB orders a struct holding a NULL after every other, so a null entity time would
        # match the newest row of all (a leak): a NULL struct matches nothing instead.
        on.append(
            f"(CASE WHEN e.{TS} IS NOT NULL THEN "
            f"{{'t': e.{TS}, 'c': 'infinity'::TIMESTAMPTZ, 's': {_MAX_SEQ}::BIGINT}} END) >= {v}.__ord"
        )
        joins.append(f"ASOF LEFT JOIN ({inner}) {v} ON {' AND '.join(on)}")
    for out in outputs:
        v = alias[out.view]
        view = next(r.view for r in requests if r.view.name == out.view)
        ttl = view.ttl
        value = f"{v}.{quote(out.feature)}"
        if view.aggregations:
            agg = next(a for a in view.aggregations if a.name == out.feature)
            if empty_value(agg) != "NULL":  # no events in the window, or no row in the relation
                value = f"coalesce({value}, {empty_value(agg)})"
            value = f"CAST({value} AS {view.feature(agg.name).dtype.duckdb})"
        if ttl is not None:
            micros = ttl // timedelta(microseconds=1)
            value = f"CASE WHEN {v}.{EVENT_TS} >= e.{TS} - to_microseconds({micros}) THEN {value} END"
        selects.append(f"{value} AS {quote(out.name)}")
    with_ = f"WITH {', '.join(ctes)} " if ctes else ""
    return f"{with_}SELECT {', '.join(selects)} FROM {ENTITY_VIEW} e {' '.join(joins)} ORDER BY e.{ROW}"
