"""Tiles under a memory limit: a group's query runs per bucket of entities (a hash of the join
keys) when its events would not fit DuckDB's memory limit, and writes the same bytes as one
query over every entity, in full runs, incremental runs and retractions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.online import tile_writer
from tests.online.agg_cases import FUNCTIONS, events
from tests.online.helpers import clean_run_dump, single_redis
from tests.support.redis import RedisClient, redis_dump
from tests.support.repos import make_store, write_parquet

# Every function over windows whose tiles keep every event of the last 20 minutes for half an
# hour or more (1 h and 2 h windows with a 5 min hop, the default for 2 h; lifetime): a bucketed
# incremental run and a later clean run then read the same events, whatever the clock.
WINDOWS = [("timedelta(hours=1)", ", hop=timedelta(minutes=5)"), ("timedelta(hours=2)", ""), ("None", "")]
DEFS = f"""
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, Field, Float64, Int64, String, ParquetSource

user = Entity("user", join_keys=["user_id"])
txns = ParquetSource("txns", path="data/txns", timestamp_field="ts", created_timestamp_field="created")
user_txn = FeatureView(
    "user_txn", entities=[user], source=txns,
    schema=[Field("amount", Float64, allow_nan=True), Field("units", Int64), Field("merchant", String)],
    aggregations=[{"".join(FUNCTIONS.format(w=w, hop=h) for w, h in WINDOWS)}
    ],
)
"""
USERS = 40
WITHIN = timedelta(minutes=20)
# Events end 11 minutes ago: none is created later than now (a created time still in the
# future hides a row until then, so two runs a few seconds apart could read different rows).
BEFORE = timedelta(minutes=11)


class Buckets:
    """The progress reports of a run: which groups ran in how many buckets."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        group, _, bucket = what.partition(": bucket ")
        if "@" in group:  # a tile group's report (plain views report the view's name)
            self.seen[group] = max(self.seen.get(group, 1), int(bucket.split("/")[1]) if bucket else 1)


def one_bucket_dump(fs: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> dict[bytes, tuple[bytes, int]]:
    """What a clean full run with one bucket per group writes (into another database)."""
    with monkeypatch.context() as m:
        m.setattr(tile_writer, "BYTES_PER_EVENT", 0)
        m.setattr(tile_writer, "BYTES_PER_LISTED", 0)
        return clean_run_dump(fs)


@single_redis
def test_tiles_in_buckets_write_what_one_query_writes(
    tmp_path: Path, any_redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURESTORE_DUCKDB_MEMORY_LIMIT", "100MB")
    now = datetime.now(UTC)
    rng = random.Random(22)
    first = events(rng, now - BEFORE, 900, WITHIN, users=USERS)
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": first})
    # A bucket's share of 100MB (~50 MB) holds ~200 events at this size: several buckets.
    monkeypatch.setattr(tile_writer, "BYTES_PER_EVENT", 250_000)
    progress = Buckets()
    fs.materialize(progress=progress)
    assert len(progress.seen) == 2 and min(progress.seen.values()) >= 3, progress.seen
    assert redis_dump(any_redis) == one_bucket_dump(fs, monkeypatch)

    # Incremental: new events of the same users and of one more, user 41.
    later = events(rng, datetime.now(UTC) - BEFORE, 300, WITHIN, users=USERS + 1)
    assert USERS + 1 in later.column("user_id").to_pylist()
    write_parquet(fs.config.repo / "data" / "txns" / "part-1.parquet", later)
    progress = Buckets()
    done = fs.materialize_incremental(progress=progress)
    assert done.views[0].entities > 0 and max(progress.seen.values()) >= 2, progress.seen
    assert users_of(redis_dump(any_redis)) == set(range(1, USERS + 2))
    assert redis_dump(any_redis) == one_bucket_dump(fs, monkeypatch)

    # Retraction: the later file goes; user 41 loses every key, the others are rewritten from
    # what remains, in their buckets: keys written in one bucket are not deleted for another's.
    (fs.config.repo / "data" / "txns" / "part-1.parquet").unlink()
    progress = Buckets()
    done = fs.materialize_incremental(progress=progress)
    assert done.views[0].corrected == USERS + 1 and max(progress.seen.values()) >= 2, progress.seen
    dump = redis_dump(any_redis)
    assert users_of(dump) == set(range(1, USERS + 1))
    assert dump == one_bucket_dump(fs, monkeypatch)


def users_of(dump: dict[bytes, tuple[bytes, int]]) -> set[int]:
    return {int(k.split(b"user_id=")[1].split(b"}")[0]) for k in dump}


def test_bucket_count_follows_the_events_and_the_memory_limit(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.register("rows", pa.table({"k": list(range(1000))}))
    con.execute("SET memory_limit = '100MB'")  # shown as 95.3 MiB: a bucket ~49.96 MB
    assert tile_writer._bucket_count(con, "rows", ["k >= ?"], [0], 1_000) == 1
    assert tile_writer._bucket_count(con, "rows", ["k >= ?"], [0], 90_000) == 2  # 90 MB
    assert tile_writer._bucket_count(con, "rows", ["k >= ?"], [900], 600_000) == 2  # 100 rows, 60 MB
    con.execute("SET memory_limit = '10MB'")
    assert tile_writer._bucket_count(con, "rows", ["k >= ?"], [0], 49_000) == 10
    assert tile_writer._size_bytes("18.8 GiB") == int(18.8 * 2**30)


@single_redis
def test_a_push_in_buckets_writes_what_one_query_writes(
    tmp_path: Path, any_redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A push recomputes its entities' tiles (write_entity_tiles); pushed twice, the same events
    # are one event each, so the second push, in one bucket, must write the same bytes. (A
    # push's connection keeps DuckDB's default limit, a share of the machine's RAM, so the
    # bucket count is set here rather than sized.)
    rng = random.Random(5)
    fs = make_store(
        tmp_path / "repo", DEFS, {"txns/part-0.parquet": events(rng, datetime.now(UTC) - BEFORE, 600, WITHIN)}
    )
    fs.materialize()
    pushed = events(rng, datetime.now(UTC) - BEFORE, 200, WITHIN, users=USERS + 3)
    queries: list[str] = []
    group_sql = tile_writer._group_sql

    def recorded(*args: Any) -> tuple[str, list[object]]:
        queries.append(str(args[-1]))  # the bucket: (b, n)
        return group_sql(*args)

    monkeypatch.setattr(tile_writer, "_group_sql", recorded)
    monkeypatch.setattr(tile_writer, "_bucket_count", lambda *args: 3)
    assert fs.push("user_txn", pushed).written > USERS
    assert sorted(set(queries)) == ["(0, 3)", "(1, 3)", "(2, 3)"], queries
    bucketed = redis_dump(any_redis)
    monkeypatch.setattr(tile_writer, "_bucket_count", lambda *args: 1)
    queries.clear()
    fs.push("user_txn", pushed)
    assert set(queries) == {"(0, 1)"}
    assert redis_dump(any_redis) == bucketed
