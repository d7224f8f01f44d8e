"""Newer wins: in whatever order time ranges are materialized, Redis ends with the newest values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from tests.online.helpers import (
    TZ,
    clean_run_dump,
    columns,
    dump,
    expected_lookup,
    lookup,
    make_store,
    newest_rows,
)

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
def store(tmp_path: Path, redis_client: redis.Redis, at: Minutes) -> FeatureStore:
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
    )


def serves_newest(fs: FeatureStore) -> bool:
    newest = newest_rows([fs.config.repo / "data" / "scores.parquet"], ["id"], "ts", "created")
    entities = [(i,) for i in IDS]
    return lookup(fs, ["scores:v"], columns(entities, ["id"])) == expected_lookup(
        newest, ["id"], entities, ["v"]
    )


def test_an_older_range_never_overwrites_a_newer_one(
    store: FeatureStore, redis_client: redis.Redis, at: Minutes
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
    assert dump(redis_client) == clean_run_dump(store)


@pytest.mark.parametrize("order", [[(0, 4), (2, 6)], [(2, 6), (0, 4)], [(0, 6), (1, 2), (0, 3)]])
def test_overlapping_ranges_in_any_order_leave_the_state_of_one_full_run(
    store: FeatureStore, redis_client: redis.Redis, at: Minutes, order: list[tuple[int, int]]
) -> None:
    for start, end in order:
        store.materialize(at(start), at(end))
    assert serves_newest(store)
    assert dump(redis_client) == clean_run_dump(store)


def test_a_rerun_rewrites_the_same_values(store: FeatureStore, redis_client: redis.Redis) -> None:
    first = store.materialize()
    state = dump(redis_client)
    again = store.materialize()
    assert again.written == first.written == len(IDS)  # ties rewrite: reruns stay idempotent
    assert dump(redis_client) == state


def test_a_range_must_not_be_empty(store: FeatureStore, at: Minutes) -> None:
    with pytest.raises(InvalidRequestError, match="is not before end"):
        store.materialize(at(3), at(3))
