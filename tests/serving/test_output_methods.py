"""Training sets and online answers (in process and over gRPC) give the same frames and statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import redis

import featurestore
from tests.serving.support import ServeProcess
from tests.support.redis import RedisServer
from tests.support.repos import make_store

DEFS = """
from featurestore import (Bool, Entity, FeatureView, Field, Float64, Int32, Int64, List, ParquetSource,
    String, Timestamp)

thing = Entity("thing", join_keys=["id"])
v = FeatureView(
    "v", entities=[thing],
    source=ParquetSource("v_src", path="data/v.parquet", timestamp_field="ts"),
    schema=[Field("n", Int64), Field("flag", Bool), Field("small", Int32), Field("x", Float64),
            Field("s", String), Field("t", Timestamp), Field("li", List(Int64))])
"""
UTC_US = pa.timestamp("us", tz="UTC")
TYPES = {
    "n": pa.int64(),
    "flag": pa.bool_(),
    "small": pa.int32(),
    "x": pa.float64(),
    "s": pa.string(),
    "t": UTC_US,
    "li": pa.list_(pa.int64()),
}
T = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
# each feature null for one entity, so numpy conversion would have widened every column
COLUMNS = {
    "n": [None, 2**62 + 1, 3],
    "flag": [True, None, False],
    "small": [1, 2, None],
    "x": [None, 0.5, 1.5],
    "s": ["a", None, ""],
    "t": [T, T, None],
    "li": [[1, None], None, []],
}
FEATURES = [f"v:{name}" for name in TYPES]


def test_to_pandas_keeps_declared_types_and_nulls_everywhere(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    ts = datetime.now(UTC) - timedelta(hours=1)
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array([ts] * 3, UTC_US),
            **{name: pa.array(COLUMNS[name], t) for name, t in TYPES.items()},
        }
    )
    fs = make_store(tmp_path / "repo", DEFS, {"v.parquet": table}, project="outputs")
    fs.materialize()
    entity = pd.DataFrame({"id": [1, 2, 3], "event_timestamp": [datetime.now(UTC)] * 3})
    with fs.get_training_set(entity, FEATURES) as training:
        offline = training.to_pandas()
    for name, arrow in TYPES.items():
        assert offline[name].dtype == pd.ArrowDtype(arrow), name
        assert offline[name].isna().tolist() == [v is None for v in COLUMNS[name]], name
    assert offline["n"].tolist()[1] == 2**62 + 1  # exact: no detour through float64
    expected = offline.drop(columns="event_timestamp")

    local = fs.get_online_features(FEATURES, {"id": [1, 2, 3]})
    pd.testing.assert_frame_equal(local.to_pandas(), expected)
    server = ServeProcess(fs.config.repo, redis_server.url)
    try:
        server.start()
        with featurestore.Client(server.target, timeout=5) as client:
            remote = client.get_online_features(FEATURES, {"id": [1, 2, 3]})
    finally:
        server.stop()
    pd.testing.assert_frame_equal(remote.to_pandas(), expected)

    # statuses read the same on both: a property, not a method
    statuses = {name: ["NULL_VALUE" if v is None else "PRESENT" for v in COLUMNS[name]] for name in TYPES}
    assert local.statuses == statuses
    assert remote.statuses == statuses
