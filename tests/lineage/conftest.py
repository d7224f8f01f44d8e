"""Lineage fixtures: a small hand-made repo (two views, a service), applied and ingested."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore
from tests.support.redis import RedisServer

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


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


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


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "data" / "stats").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "lin"\n')
    (repo / "defs.py").write_text(DEFS)
    write_stats(repo / "data" / "stats" / "a.parquet", [0.1, 0.2, 0.3, 0.4])
    write_stats(repo / "data" / "stats" / "b.parquet", [0.5, 0.6], drivers=(2,))
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2], pa.int64()),
        "ts": pa.array([at(0), at(0)], pa.timestamp("us", tz="UTC")),
        "label": ["x", "y"],
    }), repo / "data" / "zones.parquet")
    return repo


@pytest.fixture
def store(repo: Path) -> FeatureStore:
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    return fs


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The session's redis-server, emptied, named by the environment so the CLI uses it too."""
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url
