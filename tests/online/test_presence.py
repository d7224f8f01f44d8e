"""Lost online data is noticed and repaired: after FLUSHALL, or a loss of part of the keys,
freshness says the view is lost (exit 1, metric set) and the next incremental run rewrites it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from tests.online.helpers import TZ, single_redis
from tests.serving.support import ServeProcess
from tests.support.cli import run_cli
from tests.support.metrics import sample, scrape
from tests.support.redis import RedisClient, RedisServer
from tests.support.repos import make_store

DEFS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item],
                    source=ParquetSource("items_src", path="data/items", timestamp_field="ts"),
                    schema=[Field("v", Int64)])
"""
IDS = list(range(200))


@pytest.fixture
def store(tmp_path: Path, any_redis: RedisClient) -> FeatureStore:
    """200 items, one row each an hour ago, materialized incrementally once."""
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    rows = pa.table(
        {"id": pa.array(IDS, pa.int64()), "ts": pa.array([ts] * len(IDS), TZ), "v": pa.array(IDS, pa.int64())}
    )
    fs = make_store(tmp_path / "repo", DEFS, {"items/part-0.parquet": rows}, project="online")
    assert fs.materialize_incremental().written == len(IDS)
    return fs


def served(fs: FeatureStore) -> list[int | None]:
    return list(fs.get_online_features(["items:v"], {"id": IDS}).to_dict()["v"])


def freshness(fs: FeatureStore) -> tuple[int, dict[str, object]]:
    """Exit code and the JSON report of ``freshness --fail-on-stale`` for the items view."""
    result = run_cli("freshness", "--repo", str(fs.config.repo), "--json", "--fail-on-stale")
    assert "Traceback" not in result.stderr
    (report,) = json.loads(result.stdout)
    return result.returncode, report


def item_keys(client: RedisClient) -> list[bytes]:
    return sorted(client.scan_iter(match="{online:*}:items"))


@single_redis  # on a cluster: test_cluster_backend.py
def test_a_flushed_redis_is_reported_lost_and_rewritten_by_the_incremental_run(
    store: FeatureStore, any_redis: RedisClient
) -> None:
    code, report = freshness(store)
    assert (code, report["stale"], report["lost"]) == (0, False, None)

    any_redis.flushall()
    assert served(store) == [None] * len(IDS)
    code, report = freshness(store)
    assert code == 1 and report["stale"] is True
    assert str(report["reason"]).startswith("online data lost: Redis has no marker")

    again = store.materialize_incremental()
    (view,) = again.views
    assert view.rewritten is not None and view.rewritten.startswith("online data lost")
    assert (view.start, view.written) == (None, len(IDS))  # from the beginning, every entity
    assert served(store) == IDS
    code, report = freshness(store)
    assert (code, report["lost"]) == (0, None)
    assert store.materialize_incremental().written == 0  # trusted again: nothing new to write


def test_a_partial_loss_is_found_by_sampling_known_keys_and_repaired(
    store: FeatureStore, any_redis: RedisClient
) -> None:
    keys = item_keys(any_redis)
    assert len(keys) == len(IDS)
    gone = keys[::3]  # a restart from an older snapshot: the marker is still there
    any_redis.delete(*gone)

    code, report = freshness(store)
    assert code == 1 and report["stale"] is True
    assert (report["known_checked"], report["known_missing"]) == (len(IDS), len(gone))
    assert str(report["reason"]).startswith(
        f"online data partly lost: {len(gone)} of {len(IDS)} sampled keys known offline are missing"
    )

    repaired = store.materialize_incremental()
    assert repaired.views[0].rewritten is not None and repaired.views[0].start is None
    assert served(store) == IDS
    assert freshness(store)[0] == 0


@single_redis
def test_the_cli_says_why_a_view_was_rewritten(store: FeatureStore, any_redis: RedisClient) -> None:
    any_redis.flushall()
    result = run_cli("materialize", "--incremental", "--repo", str(store.config.repo))
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "items: rewritten in full (online data lost: Redis has no marker" in said
    assert served(store) == IDS


@pytest.mark.parametrize("any_redis", ["redis"], indirect=True)  # the server on one Redis
def test_the_stale_and_lost_metrics_follow_a_flush(
    store: FeatureStore, redis_server: RedisServer, any_redis: RedisClient
) -> None:
    server = ServeProcess(store.config.repo, redis_server.url).start()
    try:
        samples = scrape(server.http_url)
        assert sample(samples, "featurestore_online_stale", view="items") == 0
        assert sample(samples, "featurestore_online_lost", view="items") == 0
        any_redis.flushall()
        deadline = time.monotonic() + 60  # the run state is re-read at most every 5 s
        while sample(samples, "featurestore_online_lost", view="items") != 1:
            assert time.monotonic() < deadline, "the lost metric never rose"
            time.sleep(0.2)
            samples = scrape(server.http_url)
        assert sample(samples, "featurestore_online_stale", view="items") == 1
    finally:
        assert server.stop() == 0
