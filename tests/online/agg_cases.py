"""The aggregation view of the online tests (every function over 5 min with a 1 min hop, 30 min,
2 h and lifetime windows), its generated events, and the check that lookups equal the training
set at the end of their hop; shared by the DuckDB and Spark engines' tests."""

from __future__ import annotations

import math
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.online.tiles import TileGroup, tile_groups
from tests.online.helpers import TZ

FUNCTIONS = """
    Aggregation("amount", "count", window={w}{hop}),
    Aggregation("amount", "sum", window={w}{hop}),
    Aggregation("units", "sum", window={w}{hop}),
    Aggregation("amount", "mean", window={w}{hop}),
    Aggregation("amount", "variance", window={w}{hop}),
    Aggregation("units", "stddev", window={w}{hop}),
    Aggregation("amount", "min", window={w}{hop}),
    Aggregation("merchant", "max", window={w}{hop}),
    Aggregation("merchant", "first", window={w}{hop}),
    Aggregation("units", "last", window={w}{hop}),
    Aggregation("merchant", "last_n", window={w}{hop}, n=3),
    Aggregation("merchant", "count_distinct", window={w}{hop}),"""
WINDOWS = [  # (window, hop): hops of 1 min, 5 min (two windows share it) and lifetime
    ("timedelta(minutes=5)", ", hop=timedelta(minutes=1)"),
    ("timedelta(minutes=30)", ""),
    ("timedelta(hours=2)", ""),
    ("None", ""),
]
DEFS = f"""
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, Field, Float64, Int64, String, ParquetSource

user = Entity("user", join_keys=["user_id"])
txns = ParquetSource("txns", path="data/txns", timestamp_field="ts", created_timestamp_field="created")
user_txn = FeatureView(
    "user_txn", entities=[user], source=txns,
    schema=[Field("amount", Float64, allow_nan=True), Field("units", Int64), Field("merchant", String)],
    aggregations=[{"".join(FUNCTIONS.format(w=w, hop=h) for w, h in WINDOWS)}
    ],
)
"""
USERS = 12  # entities with events; lookups also ask for two that have none
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def events(rng: random.Random, now: datetime, count: int, within: timedelta, users: int = USERS) -> pa.Table:
    """Events in the ``within`` before ``now`` on a second grid (so they meet tile and window
    bounds exactly), with nulls, NaN and corrections (same user and time, later created). The
    first is a second before ``now``, created then (a created time still in the future hides a
    row from a run until then) and holds an amount (an event whose aggregated columns are all
    null leaves every window empty, so nothing is written for it), so every windowed group
    has a value to write whatever the seed."""
    rows: list[tuple[Any, ...]] = []
    seconds = int(within.total_seconds())
    for _ in range(count):
        at = now.replace(microsecond=0) - timedelta(seconds=rng.randint(1, seconds) if rows else 1)
        if rows and rng.random() < 0.15:  # a correction of an earlier event
            at = rows[rng.randrange(len(rows))][1]
        amount = rng.choice([None, math.nan, rng.uniform(-50, 50), float(rng.randint(0, 9))])
        user = rng.randint(1, users)
        created = rng.choice([None, at, at + timedelta(seconds=rng.randint(1, 600))])
        rows.append(
            (
                user,
                at,
                created if rows else at,
                amount if rows else 1.0,
                rng.choice([None, rng.randint(-5, 20)]),
                rng.choice([None, "a", "b", "c", "d", "e", "z", "é"]),
            )
        )
    columns = ["user_id", "ts", "created", "amount", "units", "merchant"]
    types = [pa.int64(), TZ, TZ, pa.float64(), pa.int64(), pa.string()]
    arrays = [pa.array([r[i] for r in rows], t) for i, t in enumerate(types)]
    return pa.table(dict(zip(columns, arrays, strict=True)))


def hop_end(hop_us: int | None, now_us: int) -> datetime:
    """The online rule: a window with this hop is served as of the next multiple of the hop."""
    if hop_us is None:
        return EPOCH + timedelta(microseconds=now_us)
    return EPOCH + timedelta(microseconds=-(-now_us // hop_us) * hop_us)


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want) and type(got) is type(want)


def lookup_within_one_hop(
    fs: FeatureStore, groups: list[TileGroup], ids: list[int]
) -> tuple[dict[str, list[Any]], int]:
    """Every feature of ``groups`` looked up now, and the time in µs it ended; retried when
    the clock crosses a hop boundary during the lookup (the expected values would differ)."""
    features = [f"user_txn:{a.name}" for g in groups for a in g.aggregations]
    for _ in range(5):
        before = time.time_ns() // 1000
        online = fs.get_online_features(features, {"user_id": ids}).to_dict()
        after = time.time_ns() // 1000
        if all(hop_end(g.hop_us, before) == hop_end(g.hop_us, after) for g in groups if g.hop_us):
            return online, after
    pytest.fail("the clock crossed a hop boundary in every attempt")


def check_online_equals_offline(fs: FeatureStore, ids: list[int]) -> int:
    """Look up every feature now and compare with the training set at each group's hop end;
    retried when the clock crosses a hop boundary during the lookup. Returns values compared."""
    groups = tile_groups(fs.get_feature_view("user_txn"))
    online, after = lookup_within_one_hop(fs, groups, ids)
    compared = 0
    for g in groups:
        at = hop_end(g.hop_us, after) if g.hop_us else datetime.now(UTC)
        entity_rows = pa.table(
            {"user_id": pa.array(ids, pa.int64()), "event_timestamp": pa.array([at] * len(ids), TZ)}
        )
        with fs.get_training_set(entity_rows, [f"user_txn:{a.name}" for a in g.aggregations]) as ts:
            offline = ts.to_arrow().to_pydict()
        for a in g.aggregations:
            for i, user in enumerate(ids):
                got, want = online[a.name][i], offline[a.name][i]
                if isinstance(want, datetime):
                    want = (want - EPOCH) // timedelta(microseconds=1)
                assert same(got, want), (a.name, user, got, want, at)
                compared += 1
    return compared
