"""approx_count_distinct: training sets equal the plain-Python sketch (tests/offline/
agg_reference.py) with the estimate reached, not only its exact branch below k; lookups equal
the training set at their hop's end, as for every aggregation (tests/online/agg_cases.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from featurestore import Aggregation
from featurestore.errors import DefinitionError
from tests.offline.agg_reference import Spec, aggregate, feature_name, in_window, is_null, latest_versions
from tests.offline.reference import SourceRow
from tests.online.agg_cases import check_online_equals_offline
from tests.online.helpers import TZ
from tests.support.redis import RedisClient
from tests.support.repos import make_store

DEFS = """
from datetime import timedelta
from featurestore import Aggregation, Bool, Entity, FeatureView, Field, Float64, Int64, String, ParquetSource

user = Entity("user", join_keys=["user_id"])
txns = ParquetSource("txns", path="data/txns", timestamp_field="ts", created_timestamp_field="created")
user_txn = FeatureView(
    "user_txn", entities=[user], source=txns,
    schema=[Field("units", Int64), Field("merchant", String), Field("flag", Bool),
            Field("amount", Float64, allow_nan=True)],
    aggregations=[
        Aggregation("units", "approx_count_distinct", window=timedelta(minutes=30), k=16),
        Aggregation("units", "approx_count_distinct", window=timedelta(hours=2), k=64),
        Aggregation("units", "approx_count_distinct", k=16),
        Aggregation("merchant", "approx_count_distinct", window=timedelta(hours=1), k=16),
        Aggregation("flag", "approx_count_distinct", window=timedelta(hours=1), k=16),
        Aggregation("amount", "approx_count_distinct", window=timedelta(minutes=5),
                    hop=timedelta(minutes=1), k=16),
    ],
)
"""
# What the reference computes (floats' text is DuckDB's, so amount is checked online only).
SPECS: list[Spec] = [
    ("units", "approx_count_distinct", timedelta(minutes=30), 16),
    ("units", "approx_count_distinct", timedelta(hours=2), 64),
    ("units", "approx_count_distinct", None, 16),
    ("merchant", "approx_count_distinct", timedelta(hours=1), 16),
    ("flag", "approx_count_distinct", timedelta(hours=1), 16),
]
USERS = 3


def _events(rng: random.Random, now: datetime, count: int) -> pa.Table:
    """Events over the 3 hours before ``now`` on a second grid, with nulls, corrections (same
    user and time, created later), -0.0 beside 0.0 and NaN; units from 300 values, so a
    30-minute window holds more than k = 16 distinct ones."""
    rows: list[tuple[Any, ...]] = []
    for _ in range(count):
        at = now.replace(microsecond=0) - timedelta(seconds=rng.randint(1, 3 * 3600) if rows else 1)
        if rows and rng.random() < 0.1:
            at = rows[rng.randrange(len(rows))][1]
        created = rng.choice([None, at, at + timedelta(seconds=rng.randint(1, 600))])
        rows.append(
            (
                rng.randint(1, USERS),
                at,
                created if rows else at,
                rng.choice([None, rng.randrange(300), rng.randrange(300)]),
                rng.choice([None, f"m{rng.randrange(40)}"]),
                rng.choice([None, True, False]),
                rng.choice([None, float("nan"), 0.0, -0.0, float(rng.randrange(30)) / 2]) if rows else 1.0,
            )
        )
    names = ["user_id", "ts", "created", "units", "merchant", "flag", "amount"]
    types = [pa.int64(), TZ, TZ, pa.int64(), pa.string(), pa.bool_(), pa.float64()]
    return pa.table(
        {n: pa.array([r[i] for r in rows], t) for i, (n, t) in enumerate(zip(names, types, strict=True))}
    )


def _source_rows(table: pa.Table) -> list[SourceRow]:
    data = table.to_pylist()
    return [
        SourceRow(
            (r["user_id"],), r["ts"], r["created"], (0, i), {c: r[c] for c in ("units", "merchant", "flag")}
        )
        for i, r in enumerate(data)
    ]


def _branches(keys: list[tuple[Any, ...]], times: list[datetime], rows: list[SourceRow]) -> Counter[str]:
    """Which branch of the sketch each (entity row, aggregation) takes: empty, exact, estimate."""
    events = latest_versions(rows)
    hit: Counter[str] = Counter()
    for key, at in zip(keys, times, strict=True):
        for column, _, window, k in SPECS:
            values = {
                e.values[column]
                for e in events
                if in_window(e, key, at, window) and not is_null(e.values[column])
            }
            hit["empty" if not values else "exact" if len(values) < (k or 0) else "estimate"] += 1
    return hit


@pytest.fixture(scope="module")
def events() -> pa.Table:
    return _events(random.Random(23), datetime.now(UTC), 1500)


def test_training_sets_equal_the_reference_sketch(tmp_path: Path, events: pa.Table) -> None:
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": events})
    fs.ingest()
    rng = random.Random(5)
    times = sorted(events.column("ts").to_pylist())
    # rows at events' times (the event at t is in), a second before, anywhere, and before all
    at = [rng.choice(times) + timedelta(seconds=rng.choice([0, 0, -1, 17])) for _ in range(120)]
    at += [times[0] - timedelta(minutes=1)]
    keys = [(rng.randint(0, USERS),) for _ in at]  # user 0 has no events
    entity_rows = pa.table(
        {
            "user_id": pa.array([k[0] for k in keys], pa.int64()),
            "event_timestamp": pa.array(at, TZ),
        }
    )
    features = [f"user_txn:{feature_name(*spec)}" for spec in SPECS]
    with fs.get_training_set(entity_rows, features) as ts:
        got = ts.to_arrow().to_pydict()
    rows = _source_rows(events)
    expected = aggregate(keys, at, rows, SPECS)
    for spec in SPECS:
        name = feature_name(*spec)
        assert got[name] == [e[name] for e in expected], name
    # The data reach every branch of the sketch, many times (seen: 125 empty, 122 exact and
    # 358 estimates of 605; the seeds are fixed, the times move with the clock).
    hit = _branches(keys, at, rows)
    assert hit["empty"] >= 60 and hit["exact"] >= 60 and hit["estimate"] >= 180, hit


def test_lookups_equal_the_training_set_at_the_end_of_their_hop(
    tmp_path: Path, any_redis: RedisClient, events: pa.Table
) -> None:
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": events})
    fs.materialize()
    ids = list(range(USERS + 2))  # 0 and 4: no events, 0 distinct
    assert check_online_equals_offline(fs, ids) == len(ids) * 6
    online = fs.get_online_features(["user_txn:units_approx_count_distinct_lifetime"], {"user_id": ids})
    counts = online.to_dict()["units_approx_count_distinct_lifetime"]
    assert counts[0] == counts[-1] == 0 and all(c > 16 for c in counts[1:-1])  # estimates, not exact

    # A push of 40 new merchants' units for user 1: its tiles are recomputed at once, and equal
    # the training set once the push is ingested.
    now = datetime.now(UTC).replace(microsecond=0)
    before = fs.get_online_features(["user_txn:units_approx_count_distinct_30m"], {"user_id": [1]}).to_dict()
    pushed = _events(random.Random(1), now, 40).to_pylist()
    for i, row in enumerate(pushed):
        row.update(user_id=1, ts=now - timedelta(seconds=i + 1), created=None, units=1000 + i)
    fs.push("user_txn", pa.Table.from_pylist(pushed, schema=events.schema))
    after = fs.get_online_features(["user_txn:units_approx_count_distinct_30m"], {"user_id": [1]}).to_dict()
    # more values never lower a k-minimum-values estimate; 40 new ones raise it
    assert after["units_approx_count_distinct_30m"][0] > before["units_approx_count_distinct_30m"][0]
    fs.ingest()
    assert check_online_equals_offline(fs, ids) == len(ids) * 6


@pytest.mark.parametrize(
    ("function", "k", "message"),
    [
        ("approx_count_distinct", 8, "approx_count_distinct needs k between 16 and 65536, got 8"),
        ("approx_count_distinct", True, "approx_count_distinct needs k between 16 and 65536, got True"),
        ("count_distinct", 64, "k is for approx_count_distinct only, not 'count_distinct'"),
    ],
)
def test_a_bad_sketch_size_is_refused_when_declared(function: str, k: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        Aggregation("units", function, k=k)
