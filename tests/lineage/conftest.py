"""Lineage fixtures: a small hand-made repo (two views, a service), applied and ingested."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore
from tests.lineage.support import DEFS, at, write_stats
from tests.support.redis import RedisServer
from tests.support.repos import write_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = write_repo(tmp_path / "repo", {"defs.py": DEFS}, project="lin")
    (repo / "data" / "stats").mkdir(parents=True)
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
def redis_url(redis_client: redis.Redis, redis_server: RedisServer) -> str:
    """The session's redis-server, emptied, named by the environment so the CLI uses it too."""
    return redis_server.url
