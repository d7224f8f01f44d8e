"""A running server picks up a newly applied registry version, without a restart or a failed request."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import featurestore
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import ServeProcess, open_store
from tests.support.cli import run_cli
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for

# A second view over the drivers' source: new keys in Redis, nothing else changes.
ACTIVITY = '''
from datetime import timedelta

from drivers import driver, driver_stats_source

from featurestore import Bool, FeatureView, Field, Int32

driver_activity = FeatureView(
    "driver_activity",
    entities=[driver],
    source=driver_stats_source,
    ttl=timedelta(days=2),
    schema=[Field("trips_today", Int32), Field("is_active", Bool)],
)
'''
DRIVERS = list(range(1001, 1101))


@pytest.fixture(scope="module")
def own_repo(served_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the served repo (its DuckDB file too), so applying here changes no other test."""
    repo = tmp_path_factory.mktemp("refresh") / "repo"
    shutil.copytree(served_repo, repo, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


@pytest.fixture(scope="module")
def refresh_server(own_repo: Path, serving_redis: RedisServer) -> Iterator[ServeProcess]:
    process = ServeProcess(own_repo, serving_redis.url)
    try:
        yield process.start()
    finally:
        assert process.stop() == 0, process.stderr


def test_a_new_version_is_served_without_restart(
    refresh_server: ServeProcess, own_repo: Path, serving_redis: RedisServer
) -> None:
    with featurestore.Client(refresh_server.target, timeout=5) as client:
        before = client.list_features()
        assert before.registry_version == 1
        assert not any(f.view == "driver_activity" for f in before.features)

        # Lookups keep going, over gRPC and HTTP, while the new version is applied and picked up.
        stop = threading.Event()
        versions: list[int] = []
        failures: list[str] = []

        def keep_asking() -> None:
            with featurestore.Client(refresh_server.target, timeout=5) as asker, httpx.Client() as http:
                while not stop.is_set():
                    try:
                        answer = asker.get_online_features(["driver_stats:city"], {"driver_id": DRIVERS})
                        assert answer.statuses["city"].count("PRESENT") >= 90
                        body = {"features": ["driver_stats:city"], "entities": {"driver_id": DRIVERS}}
                        reply = http.post(f"{refresh_server.http_url}/v1/online-features", json=body)
                        assert reply.status_code == 200, reply.text
                        assert reply.json()["features"][0]["values"] == answer.columns["city"]
                        versions.append(answer.registry_version)
                    except Exception as e:  # noqa: BLE001 - every failure is reported below
                        failures.append(repr(e))
                    stop.wait(0.02)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            (own_repo / "activity.py").write_text(ACTIVITY)
            env = {"FEATURESTORE_REDIS_URL": serving_redis.url}
            applied = run_cli("apply", "--repo", str(own_repo), env=env)
            assert applied.returncode == 0, applied.stderr
            assert "Applied registry version 2" in applied.stdout
            materialized = run_cli(
                "materialize", "--repo", str(own_repo), "--views", "driver_activity", env=env
            )
            assert materialized.returncode == 0, materialized.stderr

            after = wait_for(
                lambda: (listing := client.list_features()).registry_version == 2 and listing,
                15, "the server lists registry version 2",
            )
            wait_for(lambda: versions and versions[-1] == 2, 5, "lookups answered with version 2")
        finally:
            stop.set()
            asker.join(10)
        assert failures == []
        assert versions[0] == 1 and versions[-1] == 2 and sorted(versions) == versions

        refs = {f.reference: f for f in after.features}
        assert pb.ValueType.Name(refs["driver_activity:trips_today"].type) == "INT32"
        assert pb.ValueType.Name(refs["driver_activity:is_active"].type) == "BOOL"
        assert len(refs) == len(before.features) + 2
        listed = httpx.get(f"{refresh_server.http_url}/v1/features", timeout=5).json()
        assert listed["registry_version"] == 2
        assert "driver_activity:trips_today" in {f["reference"] for f in listed["features"]}

        # The new view is served, with the same values as the view it was split from.
        features = ["driver_activity:trips_today", "driver_stats:trips_today", "driver_activity:is_active"]
        answer = client.get_online_features(features, {"driver_id": DRIVERS}, full_feature_names=True)
        assert answer.registry_version == 2
        assert answer.columns["driver_activity__trips_today"] == answer.columns["driver_stats__trips_today"]
        assert answer.statuses["driver_activity__trips_today"].count("PRESENT") >= 90
        assert (
            answer.event_timestamps["driver_activity__is_active"]
            == answer.event_timestamps["driver_stats__trips_today"]
        )
        local = open_store(own_repo).get_online_features(
            features, {"driver_id": DRIVERS}, full_feature_names=True
        )
        assert answer.to_arrow().equals(local.to_arrow())
    assert refresh_server.process is not None and refresh_server.process.poll() is None
