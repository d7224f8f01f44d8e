"""A materialization killed midway, or its Redis killed midway: the run is recorded
interrupted or failed, an older range run meanwhile overwrites nothing newer, and a rerun
leaves Redis exactly as one uninterrupted run would, serving the newest source values."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from featurestore import FeatureStore
from tests.online.helpers import on_db
from tests.reliability.support import (
    PROJECT,
    DurableRedis,
    event_times,
    finish,
    hours_ago,
    items_file,
    items_repo,
    kill_after,
    materializing,
    one_error_line,
    query,
    start_cli,
    wait_until,
)
from tests.support.redis import redis_dump

ENTITIES = 25_000  # two batches of writes: about a second of materialization here


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FeatureStore, DurableRedis]]:
    """Items materialized from an old file; a newer file for the same items, ingested."""
    server = DurableRedis(tmp_path / "redis").start()
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", server.url)
    try:
        repo = items_repo(tmp_path / "repo")
        data = repo / "data" / "items"
        items_file(data / "part-0.parquet", 2 * ENTITIES, ENTITIES, 0, hours_ago(3), seed=0, span_hours=2)
        fs = FeatureStore(repo)
        fs.apply()
        fs.materialize()
        items_file(
            data / "part-1.parquet", 2 * ENTITIES, ENTITIES, 10**6, hours_ago(0.5), seed=1, span_hours=1
        )
        fs.ingest()
        yield fs, server
    finally:
        server.kill()


def statuses(fs: FeatureStore) -> list[str]:
    sql = f"SELECT status FROM {PROJECT}.materialization_runs ORDER BY run_id"
    return [str(r[0]) for r in query(fs.config.duckdb_path, sql)]


def assert_clean(fs: FeatureStore, server: DurableRedis) -> None:
    """Redis equals an uninterrupted run into an empty database, and serves the newest rows."""
    clean = on_db(fs, 1)
    clean.materialize()
    clean.close()
    assert redis_dump(server.client(0)) == redis_dump(server.client(1))
    files = sorted((fs.config.repo / "data" / "items").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files])
    newest = rows.sort_values(["ts", "v"]).drop_duplicates("id", keep="last").set_index("id")["v"]
    ids = sorted(random.Random(3).sample(sorted(newest.index), 2000))
    served = fs.get_online_features(["items:v"], {"id": ids}).to_dict()["v"]
    assert served == [int(newest[i]) for i in ids]


def test_killed_runs_an_older_range_and_a_rerun(online: tuple[FeatureStore, DurableRedis]) -> None:
    fs, server = online
    repo, client = str(fs.config.repo), server.client()
    old = event_times(redis_dump(client))
    first = pd.read_parquet(fs.config.repo / "data" / "items" / "part-0.parquet")
    assert len(old) == first["id"].nunique()
    # Killed as soon as its first writes reach Redis: midway, since two batches remain to write.
    code = kill_after(start_cli("materialize", "--repo", repo), materializing(server), 0)
    assert code == -9, code
    partial = redis_dump(client)
    now = event_times(partial)
    assert all(now[k] >= t for k, t in old.items())  # nothing went back

    # An older range, run to the end meanwhile, keeps every newer value the killed runs wrote.
    end = (hours_ago(0.5) - timedelta(hours=2)).isoformat()
    code, _, err = finish(start_cli("materialize", "--repo", repo, "--end", end))
    assert code == 0, err
    assert redis_dump(client) == partial

    code, _, err = finish(start_cli("materialize", "--repo", repo))
    assert code == 0, err
    # The killed run is recorded interrupted by the next run, which sees its process gone.
    assert statuses(fs) == ["succeeded", "interrupted", "succeeded", "succeeded"]
    assert_clean(fs, server)


def test_redis_killed_midway_fails_the_run_and_a_rerun_completes(
    online: tuple[FeatureStore, DurableRedis],
) -> None:
    fs, server = online
    repo = str(fs.config.repo)
    old = event_times(redis_dump(server.client()))
    process = start_cli("materialize", "--repo", repo)
    wait_until(process, materializing(server))
    server.kill()
    code, _, err = finish(process)
    assert code == 1
    line = one_error_line(err)
    assert f"online store {server.url} does not answer" in line
    assert statuses(fs) == ["succeeded", "failed"]

    server.start()  # the same port and append-only file: every acknowledged write is back
    after_restart = event_times(redis_dump(server.client()))
    assert all(after_restart[k] >= t for k, t in old.items())
    code, _, err = finish(start_cli("materialize", "--repo", repo))
    assert code == 0, err
    assert statuses(fs) == ["succeeded", "failed", "succeeded"]
    assert_clean(fs, server)
