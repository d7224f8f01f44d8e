"""materialize_incremental: only what is new since each view's watermark, late files included."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from featurestore import FeatureStore
from tests.online.helpers import clean_run_dump, single_redis, watermarks
from tests.online.items import DEFS, HOUR, add_file, items, served
from tests.support.redis import RedisClient, redis_dump
from tests.support.repos import make_store


def run_ids(fs: FeatureStore, ids: list[int]) -> list[int | None]:
    return fs.get_online_features(["items:v"], {"id": ids}, with_run_ids=True).run_ids["items"]


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store(tmp_path: Path, any_redis: RedisClient, now: datetime) -> FeatureStore:
    """Items 0..9, one row each five hours ago."""
    old = now - 5 * HOUR
    return make_store(
        tmp_path / "repo", DEFS, {"items/part-1.parquet": items([(i, old, old, i) for i in range(10)])},
        project="online",
    )


def test_each_run_writes_only_what_is_new(
    store: FeatureStore, any_redis: RedisClient, now: datetime
) -> None:
    first = store.materialize_incremental()
    assert (first.rows_read, first.written) == (10, 10)

    again = store.materialize_incremental()
    assert (again.rows_read, again.written) == (0, 0)  # nothing new
    assert watermarks(store)["items"][1] == again.run_id
    state = redis_dump(any_redis)

    # A new file, later in path order, with newer rows for items 1 and 2.
    add_file(store, "part-2.parquet", [(1, now - HOUR, None, 100), (2, now - HOUR, None, 200)])
    newer = store.materialize_incremental()
    assert (newer.views[0].entities, newer.written, newer.views[0].kept_newer) == (2, 2, 0)
    assert served(store, [0, 1, 2, 3]) == [0, 100, 200, 3]
    assert run_ids(store, [0, 1, 2, 3]) == [first.run_id, newer.run_id, newer.run_id, first.run_id]
    changed = {k for k, v in redis_dump(any_redis).items() if state.get(k) != v}
    assert changed == {b"{online:id=1}:items", b"{online:id=2}:items"}
    assert redis_dump(any_redis) == clean_run_dump(store)


@single_redis
def test_a_late_file_with_old_event_times_is_picked_up(
    store: FeatureStore, any_redis: RedisClient, now: datetime
) -> None:
    store.materialize_incremental()
    mark = watermarks(store)["items"][0]
    old = now - 5 * HOUR
    assert old < mark
    # Arrives after the run, but its events happened long before the watermark: item 20
    # is new, item 3 gets a re-delivery (same event time, later created time) that wins,
    # item 4 an earlier-created one that loses, item 5 an older row that loses.
    add_file(
        store,
        "part-9-late.parquet",
        [
            (20, now - 4 * HOUR, None, 2000),
            (3, old, old + HOUR, 300),
            (4, old, old - HOUR, 400),
            (5, old - HOUR, None, 500),
        ],
    )
    late = store.materialize_incremental()
    # Every row of the late keys is read (the 4 late ones and 3 earlier ones of items 3-5),
    # so each key gets its newest row overall: items 4 and 5 rewrite the value they had.
    assert (late.rows_read, late.written, late.views[0].kept_newer) == (7, 4, 0)
    assert served(store, [20, 3, 4, 5]) == [2000, 300, 4, 5]
    assert redis_dump(any_redis) == clean_run_dump(store)
    assert store.materialize_incremental().rows_read == 0  # picked up once


@single_redis
def test_a_partial_range_does_not_move_the_watermark(store: FeatureStore, now: datetime) -> None:
    # The rows before the range's start were never written: the next incremental run must
    # not start after them.
    store.materialize(start=now - 4 * HOUR, end=now)
    assert served(store, [0, 9]) == [None, None]
    assert "items" not in watermarks(store)
    store.materialize_incremental()
    assert served(store, [0, 9]) == [0, 9]


@single_redis
def test_a_full_range_run_sets_the_watermark(store: FeatureStore, now: datetime) -> None:
    full = store.materialize(end=now)
    assert watermarks(store)["items"] == (now, full.run_id)
    assert store.materialize_incremental().rows_read == 0


@single_redis
def test_an_earlier_end_never_moves_the_watermark_back(store: FeatureStore, now: datetime) -> None:
    first = store.materialize_incremental(end=now)
    store.materialize_incremental(end=now - 2 * HOUR)
    store.materialize(end=now - 3 * HOUR)
    assert watermarks(store)["items"] == (now, first.run_id)


@single_redis
def test_a_changed_earlier_file_does_not_beat_a_full_tie_in_a_later_file(
    store: FeatureStore, any_redis: RedisClient, now: datetime
) -> None:
    at = now - 2 * HOUR
    add_file(store, "part-3.parquet", [(7, at, at, 777)])
    add_file(store, "part-2.parquet", [(7, at, at, 7)])  # the same (event, created): part-3 wins
    store.materialize_incremental()
    assert served(store, [7]) == [777]
    add_file(store, "part-2.parquet", [(7, at, at, 7), (8, at, at, 8)])  # changed: keeps its place
    store.materialize_incremental()
    assert served(store, [7]) == [777]  # what a full run and the training set say
