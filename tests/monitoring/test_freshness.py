"""featurestore freshness: a view whose newest value is older than its TTL is stale, a fresh one is not."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import InvalidRequestError
from tests.support.cli import run_cli
from tests.support.redis import RedisServer

DEFINITIONS = '''
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float32, Int32, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
fresh = FeatureView(
    "fresh_view", entities=[driver], ttl=timedelta(days=2),
    source=ParquetSource("fresh_source", path="data/driver_stats", timestamp_field="event_timestamp"),
    schema=[Field("conv_rate", Float32), Field("trips_today", Int32)],
)
stale = FeatureView(
    "stale_view", entities=[driver], ttl=timedelta(days=1),
    source=ParquetSource("stale_source", path="data/stale", timestamp_field="event_timestamp"),
    schema=[Field("score", Float32)],
)
later = FeatureView(
    "later_view", entities=[driver], ttl=None,
    source=ParquetSource("later_source", path="data/stale", timestamp_field="event_timestamp"),
    schema=[Field("score", Float32)],
)
training_only = FeatureView(
    "training_only", entities=[driver], ttl=None, online=False,
    source=ParquetSource("training_source", path="data/stale", timestamp_field="event_timestamp"),
    schema=[Field("score", Float32)],
)
'''


@pytest.fixture(scope="module")
def freshness_repo(
    tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, monitoring_redis: RedisServer
) -> Path:
    """fresh_view: data up to this hour, TTL 2 days; stale_view: newest row 5 days old, TTL 1 day;
    later_view: never materialized; training_only: offline only (online=False)."""
    repo = tmp_path_factory.mktemp("freshness") / "repo"
    shutil.copytree(fresh_data / "driver_stats", repo / "data" / "driver_stats")
    (repo / "data" / "stale").mkdir(parents=True)
    newest = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1, 2, 3, 1], pa.int64()),
                "event_timestamp": pa.array(
                    [newest - timedelta(hours=h) for h in (3, 2, 1, 0)], pa.timestamp("us", tz="UTC")
                ),
                "score": pa.array([0.1, 0.2, 0.3, 0.4], pa.float32()),
            }
        ),
        repo / "data" / "stale" / "part-0.parquet",
    )
    (repo / "features.py").write_text(DEFINITIONS)
    (repo / "featurestore.toml").write_text(
        f'project = "fresh"\n[online]\nredis_url = "{monitoring_redis.url}"\n'
    )
    for args in (("apply",), ("materialize", "--views", "fresh_view,stale_view")):
        result = run_cli(*args, "--repo", str(repo), env={"FEATURESTORE_REDIS_URL": ""})
        assert result.returncode == 0, result.stderr
    return repo


def test_freshness_reports_stale_and_fresh_views(freshness_repo: Path) -> None:
    result = run_cli("freshness", "--repo", str(freshness_repo), "--json", env={"FEATURESTORE_REDIS_URL": ""})
    assert result.returncode == 0, result.stderr  # stale views alone do not fail without the flag
    report = {v["view"]: v for v in json.loads(result.stdout)}
    assert set(report) == {"fresh_view", "stale_view", "later_view"}

    # Independent reference: the newest event time in each source file.
    fresh_newest = max(
        pc.max(pq.read_table(f, columns=["event_timestamp"]).column(0)).as_py()
        for f in (freshness_repo / "data" / "driver_stats").glob("*.parquet")
    )
    fresh = report["fresh_view"]
    assert fresh["stale"] is False and fresh["reason"] is None
    assert datetime.fromisoformat(fresh["newest_event"]) == fresh_newest
    assert fresh["ttl_seconds"] == 2 * 86400
    assert 0 <= fresh["newest_age_seconds"] < 2 * 86400
    # Redis holds each driver whose newest row is within the TTL (+ 1 h grace to say EXPIRED).
    source = pa.concat_tables(
        pq.read_table(f, columns=["driver_id", "event_timestamp"])
        for f in (freshness_repo / "data" / "driver_stats").glob("*.parquet")
    )
    newest_per_driver = source.group_by("driver_id").aggregate([("event_timestamp", "max")]).column(1)
    now = datetime.now(UTC)
    kept = [t for t in newest_per_driver.to_pylist() if t >= now - timedelta(days=2, hours=1)]
    assert fresh["sampled"] == len(kept) > 90
    assert fresh["sample_expired"] == sum(t < now - timedelta(days=2) for t in kept)
    assert 0 <= fresh["sample_age_seconds"]["p50"] <= fresh["sample_age_seconds"]["max"] < 2 * 86400

    stale = report["stale_view"]
    assert stale["stale"] is True
    assert stale["reason"].startswith("newest value is 5d old, TTL 1d")
    assert 5 * 86400 <= stale["newest_age_seconds"] < 5 * 86400 + 600
    assert stale["watermark"] is not None and stale["run_id"] == fresh["run_id"]
    assert stale["sampled"] == 0  # values past their TTL (and grace) are never written to Redis

    later = report["later_view"]
    assert later["stale"] is True and later["reason"] == "never materialized"
    assert later["newest_event"] is None and later["watermark"] is None


def test_freshness_fails_on_stale_only_with_the_flag(freshness_repo: Path) -> None:
    env = {"FEATURESTORE_REDIS_URL": ""}
    stale = run_cli("freshness", "--repo", str(freshness_repo), "--fail-on-stale", env=env)
    assert stale.returncode == 1, stale.stderr
    assert "stale_view" in stale.stdout and "never materialized" in stale.stdout
    fresh = run_cli(
        "freshness", "--repo", str(freshness_repo), "--views", "fresh_view", "--fail-on-stale", env=env
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "fresh_view" in fresh.stdout and "stale_view" not in fresh.stdout


def test_freshness_api_judges_at_a_given_time(freshness_repo: Path) -> None:
    store = FeatureStore(freshness_repo, config=load_config(freshness_repo, env={}))
    later = datetime.now(UTC) + timedelta(days=3)  # three days on, the fresh view is past its TTL too
    states = {s.view: s for s in store.freshness(["fresh_view", "stale_view"], sample=0, now=later)}
    assert states["fresh_view"].is_stale() and states["stale_view"].is_stale()
    assert states["fresh_view"].sampled == 0
    now = {s.view: s for s in store.freshness(["fresh_view"], sample=10)}
    assert not now["fresh_view"].is_stale() and now["fresh_view"].sampled == 10


def test_offline_only_views_are_named_not_silently_left_out(freshness_repo: Path) -> None:
    env = {"FEATURESTORE_REDIS_URL": ""}
    # All views: the offline one is not checked, and the output says so (stdout stays JSON).
    every = run_cli("freshness", "--repo", str(freshness_repo), "--json", "--sample", "0", env=env)
    assert every.returncode == 0, every.stderr
    assert "training_only" not in {v["view"] for v in json.loads(every.stdout)}
    assert "not checked (offline only, online=False): training_only" in every.stderr
    table = run_cli("freshness", "--repo", str(freshness_repo), "--sample", "0", env=env)
    assert "not checked (offline only, online=False): training_only" in table.stdout
    # Named: refused in one line rather than answered with nothing.
    views = "fresh_view,training_only"
    named = run_cli("freshness", "--repo", str(freshness_repo), "--views", views, env=env)
    assert named.returncode == 1
    assert named.stderr.strip().splitlines() == [
        "error: feature view 'training_only' is offline only (online=False): it is never materialized, "
        "so it has no online freshness"
    ]
    store = FeatureStore(freshness_repo, config=load_config(freshness_repo, env={}))
    with pytest.raises(InvalidRequestError, match="'training_only' is offline only"):
        store.freshness(["training_only"], sample=0)
