"""Newer wins: in whatever order time ranges are materialized, Redis ends with the newest values."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError, OnlineStoreUnavailable
from featurestore.online.store import OnlineStore
from tests.online.helpers import (
    TZ,
    clean_run_dump,
    columns,
    expected_lookup,
    lookup,
    newest_rows,
    single_redis,
)
from tests.support.redis import RedisClient, RedisServer, free_port, redis_dump
from tests.support.repos import make_store

DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
scores = FeatureView("scores", entities=[item], ttl=timedelta(days=1),
                     source=ParquetSource("scores_src", path="data/scores.parquet", timestamp_field="ts",
                                          created_timestamp_field="created"),
                     schema=[Field("v", Int64)])
"""
IDS = list(range(8))


class Minutes:
    """Times on a minute grid an hour ago (within the TTL, so every row is written)."""

    def __init__(self) -> None:
        self.base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)

    def __call__(self, minute: int) -> datetime:
        return self.base + timedelta(minutes=minute)


@pytest.fixture
def at() -> Minutes:
    return Minutes()


@pytest.fixture
def store(tmp_path: Path, any_redis: RedisClient, at: Minutes) -> FeatureStore:
    # Item i has a row at minutes 0..5 except where (i + minute) % 3 == 0, so some items
    # have rows in only some ranges.
    rows = [(i, m) for i in IDS for m in range(6) if (i + m) % 3]
    return make_store(
        tmp_path / "repo",
        DEFS,
        {
            "scores.parquet": pa.table(
                {
                    "id": pa.array([i for i, _ in rows], pa.int64()),
                    "ts": pa.array([at(m) for _, m in rows], TZ),
                    "created": pa.array([at(m) + timedelta(seconds=i) for i, m in rows], TZ),
                    "v": pa.array([100 * i + m for i, m in rows], pa.int64()),
                }
            )
        },
        project="online",
    )


def serves_newest(fs: FeatureStore) -> bool:
    newest = newest_rows([fs.config.repo / "data" / "scores.parquet"], ["id"], "ts", "created")
    entities = [(i,) for i in IDS]
    return lookup(fs, ["scores:v"], columns(entities, ["id"])) == expected_lookup(
        newest, ["id"], entities, ["v"]
    )


def test_an_older_range_never_overwrites_a_newer_one(
    store: FeatureStore, any_redis: RedisClient, at: Minutes
) -> None:
    newer = store.materialize(at(3), at(6))
    older = store.materialize(at(0), at(3))
    # Every item has a row in [3, 6), so the older range finds a newer value everywhere.
    assert newer.views[0].written == len(IDS)
    assert older.views[0].entities == len(IDS) and older.views[0].written == 0
    assert older.views[0].kept_newer == len(IDS)
    assert serves_newest(store)
    result = store.get_online_features(["scores:v"], {"id": IDS}, with_run_ids=True)
    assert result.run_ids == {"scores": [newer.run_id] * len(IDS)}
    assert redis_dump(any_redis) == clean_run_dump(store)


@single_redis
@pytest.mark.parametrize("order", [[(0, 4), (2, 6)], [(2, 6), (0, 4)], [(0, 6), (1, 2), (0, 3)]])
def test_overlapping_ranges_in_any_order_leave_the_state_of_one_full_run(
    store: FeatureStore, any_redis: RedisClient, at: Minutes, order: list[tuple[int, int]]
) -> None:
    for start, end in order:
        store.materialize(at(start), at(end))
    assert serves_newest(store)
    assert redis_dump(any_redis) == clean_run_dump(store)


@single_redis
def test_a_rerun_rewrites_the_same_values(store: FeatureStore, any_redis: RedisClient) -> None:
    first = store.materialize()
    state = redis_dump(any_redis)
    again = store.materialize()
    assert again.written == first.written == len(IDS)  # ties rewrite: reruns stay idempotent
    assert redis_dump(any_redis) == state


@single_redis
def test_a_range_must_not_be_empty(store: FeatureStore, at: Minutes) -> None:
    with pytest.raises(InvalidRequestError, match="is not before end"):
        store.materialize(at(3), at(3))


# -- equal event times: the later created time wins, a missing one loses (as in Feast's DuckDB
# store, whose ORDER BY created DESC puts nulls last), in one run, across runs and offline ----


def one_row(repo: Path, at: datetime, created: datetime | None, v: int) -> FeatureStore:
    """A repo of the ``online`` project whose only row is item 0 at ``at``."""
    table = pa.table(
        {
            "id": pa.array([0], pa.int64()),
            "ts": pa.array([at], TZ),
            "created": pa.array([created], TZ),
            "v": pa.array([v], pa.int64()),
        }
    )
    return make_store(repo, DEFS, {"scores.parquet": table}, project="online")


@pytest.mark.parametrize("loser_created", [timedelta(seconds=1), None], ids=["earlier", "missing"])
@pytest.mark.parametrize("winner_first", [True, False])
def test_at_equal_event_times_the_later_created_wins_whichever_run_writes_first(
    tmp_path: Path,
    redis_client: redis.Redis,
    at: Minutes,
    loser_created: timedelta | None,
    winner_first: bool,
) -> None:
    # Two repos (two DuckDB files) of one project write the same key: only the newer-wins
    # script sees both rows, so only its created-time comparison can decide.
    winner = one_row(tmp_path / "winner", at(0), at(0) + timedelta(seconds=2), 2)
    loser = one_row(tmp_path / "loser", at(0), None if loser_created is None else at(0) + loser_created, 1)
    first, second = (winner, loser) if winner_first else (loser, winner)
    first.materialize()
    later = second.materialize()
    assert later.views[0].written == (0 if winner_first else 1)
    assert later.views[0].kept_newer == (1 if winner_first else 0)
    assert winner.get_online_features(["scores:v"], {"id": [0]}).to_dict()["v"] == [2]


def test_a_row_without_created_loses_a_tie_online_and_offline(
    tmp_path: Path, redis_client: redis.Redis, at: Minutes
) -> None:
    # Item 0's row with a created time is in the first file, item 1's in the second: a full
    # tie would go to the later file, so either way only the created time decides.
    def table(rows: list[tuple[int, datetime | None, int]]) -> pa.Table:
        return pa.table(
            {
                "id": pa.array([i for i, _, _ in rows], pa.int64()),
                "ts": pa.array([at(0)] * len(rows), TZ),
                "created": pa.array([c for _, c, _ in rows], TZ),
                "v": pa.array([v for _, _, v in rows], pa.int64()),
            }
        )

    fs = make_store(
        tmp_path / "repo",
        DEFS.replace("scores.parquet", "scores"),
        {
            "scores/part-0.parquet": table([(0, at(0), 10), (1, None, 11)]),
            "scores/part-1.parquet": table([(0, None, 20), (1, at(0), 21)]),
        },
        project="online",
    )
    fs.materialize()
    assert fs.get_online_features(["scores:v"], {"id": [0, 1]}).to_dict()["v"] == [10, 21]
    entities = pa.table({"id": pa.array([0, 1], pa.int64()), "event_timestamp": pa.array([at(1)] * 2, TZ)})
    with fs.get_training_set(entities, ["scores:v"]) as ts:
        assert ts.to_arrow().column("v").to_pylist() == [10, 21]


def test_writes_of_sequences_that_differ_in_length_are_refused_before_any_write(
    any_redis: RedisClient,
) -> None:
    url = os.environ["FEATURESTORE_REDIS_URL"]  # one Redis or the cluster, as any_redis set it
    keys = [f"{{p:id={i}}}:v" for i in range(300)]
    with OnlineStore.connect(url, "p") as online:
        for write in (online.write, online.replace):
            with pytest.raises(ValueError, match=r"differ in length \(300, 299, 300\)"):
                write(keys, [b"x" * 24] * 299, [0] * 300)
            with pytest.raises(ValueError, match=r"differ in length \(300, 300, 1\)"):
                write(keys, [b"x" * 24] * 300, [0])
        assert online.missing(keys) == len(keys)  # nothing written


def test_reads_and_replacing_writes_go_on_after_redis_restarts(tmp_path: Path) -> None:
    """The blocking backend packs MGET and SET itself and sends them on the pool's connection:
    replies come back in key order, expiries are kept, an error reply is raised, and a
    connection that a restart dropped is replaced."""
    with RedisServer(free_port(), tmp_path) as server:
        store = OnlineStore.connect(server.url, "test")
        client = redis.Redis.from_url(server.url)
        expire_at = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
        store.replace(["{t:a}:v", "{t:b}:v"], [b"one", b"\x00two"], [0, expire_at])
        assert store.read(["{t:b}:v", "{t:c}:v", "{t:a}:v"]) == [b"\x00two", None, b"one"]
        assert client.pexpiretime("{t:b}:v") == expire_at
        assert client.pexpiretime("{t:a}:v") == -1
        client.close()
        # An error reply (a negative expiry) is raised once every reply is read: the next
        # command on the connection gets its own reply, and the other SET was done.
        with pytest.raises(OnlineStoreUnavailable, match="invalid expire time"):
            store.replace(["{t:x}:v", "{t:y}:v"], [b"x", b"y"], [-5, 0])
        assert store.read(["{t:x}:v", "{t:y}:v"]) == [None, b"y"]
        for value in (b"after one restart", b"after two"):
            server.stop()
            server.start()  # empty, and the store's connection is gone
            assert store.read(["{t:a}:v"]) == [None]
            store.replace(["{t:a}:v"], [value], [0])
            assert store.read(["{t:a}:v"]) == [value]
        store.close()
