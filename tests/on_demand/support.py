"""A feature repo with on-demand views (well-behaved ones and ones that fail each way), its
data written per test, and an independent reference of what the functions compute."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.repos import write_repo

TTL = timedelta(days=2)

DEFINITIONS = """
import time
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from featurestore import (
    Bool, Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource, RequestSource,
    String, on_demand_view,
)

driver = Entity("driver", join_keys=["driver_id"])
source = ParquetSource("stats_source", path="data/stats", timestamp_field="event_timestamp",
                       created_timestamp_field="created")
stats = FeatureView("stats", entities=[driver], source=source, ttl=timedelta(days=2),
                    schema=[Field("a", Float64), Field("b", Int64), Field("s", String)])
req = RequestSource("req", schema=[Field("x", Float64), Field("flag", Bool)])


@on_demand_view(sources=[stats, req],
                schema=[Field("ab_x", Float64), Field("label", String), Field("a_or_default", Float64)])
def combo(df):
    return pd.DataFrame({
        "ab_x": df["a"] * df["b"] + df["x"],
        "label": df["s"] + "!",
        "a_or_default": df["a"].fillna(-1.0),
    })


@on_demand_view(sources=[stats[["a"]], req], schema=[Field("picked", Float64), Field("x_int", Int64)],
                mode="arrow")
def chooser(t):
    return pa.table({"picked": pc.if_else(t["flag"], t["a"], t["x"]),
                     "x_int": pc.cast(pc.round(t["x"]), pa.int64())})


@on_demand_view(sources=[stats[["a"]]], schema=[Field("out", Float64)])
def boom(df):
    raise RuntimeError("boom from user code")


@on_demand_view(sources=[stats[["a"]]], schema=[Field("out", Float64)])
def short(df):
    return pd.DataFrame({"out": df["a"]}).iloc[:-1]


@on_demand_view(sources=[stats[["s"]]], schema=[Field("out", Float64)])
def wrong_type(df):
    return pd.DataFrame({"out": df["s"]})


@on_demand_view(sources=[stats[["a"]]], schema=[Field("out", Float64)])
def not_a_frame(df):
    return [1.0] * len(df)


@on_demand_view(sources=[stats[["a"]], req], schema=[Field("out", Float64)])
def slow(df):
    time.sleep(float(df["x"].iloc[0]))
    return pd.DataFrame({"out": df["a"]})


pricing = FeatureService("pricing", features=[combo, chooser, "stats:b"])
"""

FEATURES = ["combo:ab_x", "combo:label", "combo:a_or_default", "chooser:picked", "chooser:x_int", "stats:b"]
SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("a", pa.float64()),
        ("b", pa.int64()),
        ("s", pa.string()),
    ]
)


def make_repo(folder: Path, now: datetime) -> Path:
    """The repo with one row of data (so that apply can read the source's columns)."""
    repo = write_repo(folder, {"defs.py": DEFINITIONS})
    write_rows(repo, "seed", [Row(0, now - timedelta(hours=1), 1.0, 1, "seed")])
    return repo


@dataclass(frozen=True)
class Row:
    driver_id: int
    event_timestamp: datetime
    a: float | None
    b: int | None
    s: str | None


def write_rows(repo: Path, name: str, rows: Sequence[Row]) -> None:
    """A new source file of ``rows`` (the created time is the event time)."""
    folder = repo / "data" / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    columns: dict[str, list[Any]] = {
        "driver_id": [r.driver_id for r in rows],
        "event_timestamp": [r.event_timestamp for r in rows],
        "created": [r.event_timestamp for r in rows],
        "a": [r.a for r in rows],
        "b": [r.b for r in rows],
        "s": [r.s for r in rows],
    }
    pq.write_table(pa.table(columns, SCHEMA), folder / f"{name}.parquet")


def latest(rows: Sequence[Row], driver: int, at: datetime) -> Row | None:
    """The row a lookup at ``at`` serves for ``driver``: the newest, if within the TTL."""
    mine = [r for r in rows if r.driver_id == driver and r.event_timestamp <= at]
    if not mine:
        return None
    newest = max(mine, key=lambda r: r.event_timestamp)
    return newest if newest.event_timestamp >= at - TTL else None


def reference(row: Row | None, x: float | None, flag: bool | None) -> dict[str, Any]:
    """What the functions compute, written out in plain Python (nulls propagate)."""
    a = row.a if row else None
    b = row.b if row else None
    s = row.s if row else None
    return {
        "ab_x": None if a is None or b is None or x is None else a * b + x,
        "label": None if s is None else s + "!",
        "a_or_default": -1.0 if a is None else a,
        "picked": None if flag is None else (a if flag else x),
        "x_int": None if x is None else round(x),
        "b": b,
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b) and type(a) is type(b) or (a is None and b is None)
