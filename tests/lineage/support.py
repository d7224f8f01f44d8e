"""Lineage test helpers: the hand-made repo's definitions and its Parquet files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.clock import minutes_after

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

DEFS = '''
from datetime import timedelta
from pandera.pandas import Check
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
stats = FeatureView(
    "stats", entities=[driver], ttl=None,
    source=ParquetSource("stats_src", path="data/stats", timestamp_field="ts"),
    schema=[Field("trips", Int64), Field("score", Float64, checks=[Check.ge(0)])])
zones = FeatureView(
    "zones", entities=[driver], online=False,
    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
    schema=[Field("label", String)])
svc = FeatureService("svc", features=[stats[["score"]], zones[["label"]]])
'''


at = minutes_after(T0)


def write_stats(path: Path, scores: list[float], drivers: tuple[int, ...] = (1, 2)) -> None:
    """A stats file: one row per driver and score, a minute apart."""
    n = len(scores)
    pq.write_table(pa.table({
        "driver_id": pa.array([drivers[i % len(drivers)] for i in range(n)], pa.int64()),
        "ts": pa.array([at(i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "trips": pa.array(list(range(n)), pa.int64()),
        "score": scores,
    }), path)


def entity_frame(path: Path) -> Path:
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2, 1, 3], pa.int64()),
        "event_timestamp": pa.array([at(60), at(60), at(2), at(60)], pa.timestamp("us", tz="UTC")),
        "target": [1, 0, 1, 0],
    }), path)
    return path
