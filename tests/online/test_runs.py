"""Materialization runs: a failed, interrupted or killed run is recorded, moves no watermark,
and running again leaves Redis as one uninterrupted run would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import OnlineStoreUnavailable
from featurestore.online import materialize as materialize_module
from tests.online.helpers import TZ, clean_run_dump, runs, single_redis, watermarks
from tests.support.redis import RedisClient, RedisServer, free_port, redis_dump
from tests.support.repos import make_store, write_parquet

DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource, String

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item], ttl=timedelta(days=30),
                    source=ParquetSource("items_src", path="data/items", timestamp_field="ts"),
                    schema=[Field("v", Int64), Field("name", String)])
"""
BATCH = 3


def items(ids: range, at: datetime, v: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array([at] * len(ids), TZ),
            "v": pa.array([v + i for i in ids], pa.int64()),
            "name": [f"item {i}" for i in ids],
        }
    )


@pytest.fixture
def store(tmp_path: Path, any_redis: RedisClient, monkeypatch: pytest.MonkeyPatch) -> FeatureStore:
    """Items 0..9 materialized (watermark set); then a newer file for items 0..19, ingested."""
    monkeypatch.setattr(materialize_module, "BATCH_ROWS", BATCH)
    now = datetime.now(UTC)
    fs = make_store(
        tmp_path / "repo", DEFS, {"items/part-0.parquet": items(range(10), now - timedelta(hours=2), 0)},
        project="online",
    )
    fs.materialize_incremental()
    write_parquet(
        tmp_path / "repo" / "data" / "items" / "part-1.parquet",
        items(range(20), now - timedelta(hours=1), 100),
    )
    # Ingested now, so a progress callback during materialize sees only materialization.
    fs.ingest()
    return fs


def newer_values(fs: FeatureStore) -> int:
    """How many items Redis serves from the newer file (values of 100 and up)."""
    values = fs.get_online_features(["items:v"], {"id": list(range(20))}).to_dict()["v"]
    return sum(v is not None and v >= 100 for v in values)


def stop_after_first_batch(error: BaseException, written: list[int]):  # type: ignore[no-untyped-def]
    """Raises after the first batch, appending the rows written so far to ``written``.

    BATCH_ROWS is a maximum: DuckDB may stream a short first batch, so tests compare with
    what was written when stopped, never with BATCH itself."""

    def progress(what: str, done: int, total: int) -> None:
        if done:
            written.append(done)
            raise error

    return progress


@single_redis
@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("disk on fire"), "failed"), (KeyboardInterrupt(), "interrupted")]
)
def test_a_run_stopped_midway_is_recorded_and_a_rerun_completes_it(
    store: FeatureStore, any_redis: RedisClient, error: BaseException, status: str
) -> None:
    mark = watermarks(store)
    written: list[int] = []
    with pytest.raises(type(error)):
        store.materialize_incremental(progress=stop_after_first_batch(error, written))
    [first] = written
    assert 0 < first <= BATCH
    assert newer_values(store) == first  # the first batch was written, nothing after it
    last = runs(store)[-1]
    assert last[1] == status
    assert (last[2] or "") == ("RuntimeError: disk on fire" if status == "failed" else "")
    assert watermarks(store) == mark  # did not advance

    store.materialize_incremental()
    assert runs(store)[-1][1] == "succeeded"
    assert watermarks(store)["items"][1] == runs(store)[-1][0]
    assert redis_dump(any_redis) == clean_run_dump(store)


KILL_AFTER_FIRST_BATCH = textwrap.dedent("""
    import os, signal, sys
    from featurestore import FeatureStore
    from featurestore.online import materialize

    materialize.BATCH_ROWS = int(sys.argv[2])

    def progress(what, done, total):
        if done:
            print(done, flush=True)  # rows written: BATCH_ROWS is only a maximum
            os.kill(os.getpid(), signal.SIGKILL)

    FeatureStore(sys.argv[1]).materialize_incremental(progress=progress)
""")


def test_a_killed_run_moves_no_watermark_and_a_rerun_completes_it(
    store: FeatureStore, any_redis: RedisClient
) -> None:
    mark = watermarks(store)
    done = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_BATCH, str(store.config.repo), str(BATCH)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -9, done.stderr
    first = int(done.stdout)
    assert 0 < first <= BATCH
    assert newer_values(store) == first
    # A killed process cannot record its end: the run stays "running" until the next run
    # on this host sees that its process is gone and records it as interrupted.
    assert [r[1] for r in runs(store)] == ["succeeded", "running"]
    assert watermarks(store) == mark
    store.materialize_incremental()
    assert [r[1] for r in runs(store)] == ["succeeded", "interrupted", "succeeded"]
    assert redis_dump(any_redis) == clean_run_dump(store)


def test_redis_dying_midway_fails_the_run_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        monkeypatch.setenv("FEATURESTORE_REDIS_URL", server.url)
        monkeypatch.setattr(materialize_module, "BATCH_ROWS", BATCH)
        at = datetime.now(UTC) - timedelta(hours=1)
        fs = make_store(
            tmp_path / "repo", DEFS, {"items/part-0.parquet": items(range(10), at, 0)}, project="online"
        )
        fs.ingest()

        def kill_redis(what: str, done: int, total: int) -> None:
            if done:
                server.stop()

        with pytest.raises(OnlineStoreUnavailable, match=f"127.0.0.1:{server.port}/0 does not answer"):
            fs.materialize(progress=kill_redis)
        ((run_id, status, error),) = runs(fs)
        assert status == "failed" and "does not answer" in (error or "")
        assert watermarks(fs) == {}
        server.start()  # empty again: nothing persisted
        fs.materialize()
        assert runs(fs)[-1][1] == "succeeded"
        assert fs.get_online_features(["items:v"], {"id": [9]}).to_dict()["v"] == [9]
    finally:
        server.stop()
