"""Adding a feature to a served view keeps its existing features served, with no gap.

A real server runs across the apply: lookups go on over gRPC and HTTP while the new version
is applied and picked up, and every one of them must answer the existing features as before.
The values in Redis were written under the earlier feature list; they are decoded by it, so
the new feature answers NOT_FOUND until a materialization writes it.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import featurestore
from tests.serving.support import ServeProcess, open_store, wait_for
from tests.support.cli import run_cli
from tests.support.redis import RedisServer

SHIFT = '''
from datetime import timedelta

from drivers import driver, driver_stats_source

from featurestore import Bool, FeatureView, Field, Float32, Int32

driver_shift = FeatureView(
    "driver_shift",
    entities=[driver],
    source=driver_stats_source,
    ttl=timedelta(days=2),
    schema=[Field("trips_today", Int32), Field("online_hours", Float32)MORE],
)
'''
BEFORE = SHIFT.replace("MORE", "")
AFTER = SHIFT.replace("MORE", ', Field("is_active", Bool)')
EXISTING = ["driver_shift:trips_today", "driver_shift:online_hours"]
DRIVERS = list(range(1001, 1101))


@pytest.fixture(scope="module")
def redis_url(serving_redis: RedisServer) -> str:
    """A database of its own: values written under this module's layouts meet no other test."""
    return serving_redis.url.rsplit("/", 1)[0] + "/5"


@pytest.fixture(scope="module")
def own_repo(
    served_repo: Path, serving_redis: RedisServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the served repo (its DuckDB file too) with a view ``driver_shift``, applied
    and materialized into this module's database."""
    repo = tmp_path_factory.mktemp("additive") / "repo"
    shutil.copytree(served_repo, repo, ignore=shutil.ignore_patterns("__pycache__"))
    toml = repo / "featurestore.toml"
    toml.write_text(toml.read_text().replace(serving_redis.url, redis_url))
    assert redis_url in toml.read_text()
    (repo / "shift.py").write_text(BEFORE)
    for command in (("apply",), ("materialize", "--views", "driver_shift")):
        result = run_cli(*command, "--repo", str(repo), env={"FEATURESTORE_REDIS_URL": redis_url})
        assert result.returncode == 0, result.stderr
    return repo


@pytest.fixture(scope="module")
def server(own_repo: Path, redis_url: str) -> Iterator[ServeProcess]:
    process = ServeProcess(own_repo, redis_url)
    try:
        yield process.start()
    finally:
        assert process.stop() == 0, process.stderr


def test_adding_a_feature_keeps_the_existing_ones_served_without_a_gap(
    server: ServeProcess, own_repo: Path, redis_url: str
) -> None:
    env = {"FEATURESTORE_REDIS_URL": redis_url}
    with featurestore.Client(server.target, timeout=5) as client:
        baseline = client.get_online_features(EXISTING, {"driver_id": DRIVERS})
        version = baseline.registry_version
        assert baseline.statuses["trips_today"].count("PRESENT") >= 90

        # Lookups keep going, over gRPC and HTTP, while the new version is applied and picked up.
        stop = threading.Event()
        versions: list[int] = []
        failures: list[str] = []

        def keep_asking() -> None:
            body = {"features": EXISTING, "entities": {"driver_id": DRIVERS}}
            with featurestore.Client(server.target, timeout=5) as asker, httpx.Client() as http:
                while not stop.is_set():
                    try:
                        answer = asker.get_online_features(EXISTING, {"driver_id": DRIVERS})
                        versions.append(answer.registry_version)
                        assert answer.statuses == baseline.statuses, answer.registry_version
                        assert answer.columns == baseline.columns
                        reply = http.post(f"{server.http_url}/v1/online-features", json=body)
                        assert reply.status_code == 200, reply.text
                        assert [c["statuses"] for c in reply.json()["features"]] == [
                            baseline.statuses[name] for name in ("trips_today", "online_hours")
                        ]
                    except Exception as e:  # noqa: BLE001 - every failure is reported below
                        failures.append(repr(e))
                    stop.wait(0.02)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            (own_repo / "shift.py").write_text(AFTER)
            applied = run_cli("apply", "--repo", str(own_repo), env=env)  # no --allow-breaking
            assert applied.returncode == 0, applied.stderr
            assert f"Applied registry version {version + 1}" in applied.stdout
            new = version + 1
            wait_for(lambda: versions and versions[-1] == new, 20, "lookups answered by the new version")
        finally:
            stop.set()
            asker.join(10)
        assert failures == []
        assert versions[0] == version and sorted(versions) == versions

        # The new feature is not found until materialized; the existing ones are served as before.
        features = [*EXISTING, "driver_shift:is_active"]
        answer = client.get_online_features(features, {"driver_id": DRIVERS})
        assert answer.registry_version == version + 1
        assert {k: answer.statuses[k] for k in ("trips_today", "online_hours")} == baseline.statuses
        assert answer.statuses["is_active"] == ["NOT_FOUND"] * len(DRIVERS)
        assert answer.event_timestamps["is_active"] == [None] * len(DRIVERS)
        reply = httpx.post(
            f"{server.http_url}/v1/online-features",
            json={"features": features, "entities": {"driver_id": DRIVERS}}, timeout=10,
        ).json()
        assert [c["statuses"] for c in reply["features"]] == [answer.statuses[k] for k in answer.statuses]
        assert reply["features"][2]["event_timestamps"] == [None] * len(DRIVERS)
        local = open_store(own_repo).get_online_features(features, {"driver_id": DRIVERS})
        assert local.statuses == answer.statuses

        # Once materialized, the new feature is served wherever the others are.
        materialized = run_cli("materialize", "--repo", str(own_repo), "--views", "driver_shift", env=env)
        assert materialized.returncode == 0, materialized.stderr
        after = client.get_online_features(features, {"driver_id": DRIVERS})
        found = baseline.statuses["trips_today"]
        assert after.statuses["is_active"] == after.statuses["trips_today"] == found
        assert {k: after.columns[k] for k in ("trips_today", "online_hours")} == baseline.columns
