"""Tile groups and their rows as both engines compute them, generated at random: the view of
every function over every state type (test_tile_codec.py, test_tile_kernel.py)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from featurestore import (
    Aggregation,
    Bool,
    Entity,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int32,
    Int64,
    ParquetSource,
    String,
    Timestamp,
)
from featurestore.online.tiles import STATES, TileGroup

HOP = timedelta(minutes=5)
COLUMNS = [
    Field("f64", Float64),
    Field("f32", Float32),
    Field("i64", Int64),
    Field("i32", Int32),
    Field("s", String),
    Field("t", Timestamp),
    Field("b", Bool),
]
FUNCTIONS = {  # function -> the columns it takes here
    "count": ["f64", "s"],
    "sum": ["f64", "i64", "i32"],
    "mean": ["f64", "i32"],
    "variance": ["f64"],
    "stddev": ["i64"],
    "min": ["f64", "i32", "s", "t"],
    "max": ["f32", "i64", "s", "t"],
    "first": ["f64", "s", "b", "t"],
    "last": ["i32", "s", "b"],
    "last_n": ["s", "f64", "t", "b"],
    "count_distinct": ["s", "i64", "f64"],
}


def view(windows: tuple[timedelta | None, ...] = (timedelta(minutes=15), timedelta(hours=1))) -> FeatureView:
    aggregations = [
        Aggregation(
            column,
            function,
            window=window,
            hop=HOP if window else None,
            n=2 if function == "last_n" else None,
        )
        for function, columns in FUNCTIONS.items()
        for column in columns
        for window in windows
    ]
    user = Entity("user", join_keys=["user_id"])
    source = ParquetSource("events", path="data/events", timestamp_field="ts")
    return FeatureView("v", entities=[user], source=source, schema=COLUMNS, aggregations=aggregations)


def random_item(rng: random.Random, item: str) -> Any:
    return {
        "Float64": lambda: rng.choice([rng.uniform(-9, 9), float(rng.randint(-3, 3)), -0.0]),
        "Float32": lambda: float(np.float32(rng.uniform(-9, 9))),
        "Int64": lambda: rng.choice([rng.randint(-50, 50), rng.randint(-(2**62), 2**62)]),
        "Int32": lambda: rng.randint(-(2**31), 2**31 - 1),
        "String": lambda: rng.choice(["", "a", "b", "é", "zz", "ß", "a\x00"]),
        "Timestamp": lambda: rng.randint(0, 2**52),
        "Bool": lambda: rng.random() < 0.5,
    }[item]()


def random_rows(rng: random.Random, group: TileGroup, n: int) -> pa.Table:
    """``n`` entities' rows of ``group`` (as the engines compute them), with nulls, empty
    tiles and tiles past ``now``."""
    columns: dict[str, list[Any]] = {f.name: [] for f in group.fields}
    for _ in range(n):
        tiles = sorted(rng.sample(range(100, 130), rng.choice([0, *range(1, 13)])))  # 0: decodes too
        t = len(tiles)
        columns["__tiles"].append(tiles)
        for a, at, _ in group.steps:
            names = [group.fields[at + k].name for k in range(len(STATES[a.function]))]
            item = group.fields[at].dtype.name[5:-1]
            if a.function in ("last_n", "count_distinct"):
                counts = [rng.choice([0, 1, 2, 3]) for _ in range(t)]
                values = [random_item(rng, item) for _ in range(sum(counts))]
                columns[names[0]].append(values)
                columns[names[1]].append(counts)
            elif a.function in ("variance", "stddev"):
                counts = [rng.choice([0, 1, 1, 2, 5]) for _ in range(t)]
                columns[names[0]].append(counts)
                columns[names[1]].append([rng.uniform(-5, 5) if c else None for c in counts])
                columns[names[2]].append(
                    [rng.uniform(0, 9) if c > 1 else (0.0 if c else None) for c in counts]
                )
            elif a.function == "mean":
                counts = [rng.choice([0, 1, 3]) for _ in range(t)]
                columns[names[0]].append([rng.uniform(-9, 9) if c else None for c in counts])
                columns[names[1]].append(counts)
            elif a.function == "count":
                columns[names[0]].append([rng.randint(0, 4) for _ in range(t)])
            elif a.function == "sum" and item == "Int64":  # totals within Int64, as the type says
                values = [rng.choice([None, rng.randint(-(2**40), 2**40)]) for _ in range(t)]
                columns[names[0]].append(values)
            else:
                columns[names[0]].append(
                    [None if rng.random() < 0.2 else random_item(rng, item) for _ in range(t)]
                )
    arrays = {f.name: pa.array(columns[f.name], f.dtype.arrow) for f in group.fields}
    return pa.table(arrays)
