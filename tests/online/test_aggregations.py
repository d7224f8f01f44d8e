"""Aggregation views online: materialized tiles, combined at lookup, equal the training set at
the end of the lookup's hop (the online rule), for every function and window; incremental
runs rewrite only the entities with new events; expiry and removal clean up after them."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest

from featurestore import FeatureStore
from featurestore.online import tile_writer
from featurestore.online.tiles import tile_groups
from tests.online.agg_cases import DEFS, EPOCH, USERS, check_online_equals_offline, events, hop_end
from tests.support.redis import RedisClient, keys_matching
from tests.support.repos import make_store, write_parquet


def written_values(fs: FeatureStore, table: pa.Table, end: datetime, users: set[int] | None = None) -> int:
    """Entities (of ``users``) with an event in a tile that a window served from ``end`` on may
    need, summed over the groups (a plain-Python count of what a run writes)."""
    if users is not None:
        table = table.filter(pa.compute.is_in(table.column("user_id"), pa.array(sorted(users))))
    end_us = (end - EPOCH) // timedelta(microseconds=1)
    total = 0
    for g in tile_groups(fs.get_feature_view("user_txn")):
        times = zip(table.column("user_id").to_pylist(), table.column("ts").to_pylist(), strict=True)
        if g.hop_us is None:
            total += len({u for u, t in times if t < end})
            continue
        oldest = hop_end(g.hop_us, end_us) - timedelta(microseconds=g.span * g.hop_us)
        total += len({u for u, t in times if oldest < t < end})
    return total


def test_lookups_equal_the_training_set_at_the_end_of_their_hop(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = datetime.now(UTC)
    rng = random.Random(19)
    table = events(rng, now, 600, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": table})
    done = fs.materialize()
    [result] = done.views
    # One value per entity and group whose tiles a lookup from now on may combine (how many
    # of the 12 users have events in the 1-min hop group's tiles depends on the clock).
    assert result.entities == written_values(fs, table, result.end) > 2 * USERS
    # Rows read: the deduplicated events, each once (the lifetime group reads them all).
    events_read = set(zip(table.column("user_id").to_pylist(), table.column("ts").to_pylist(), strict=True))
    assert result.rows_read == len(events_read) < table.num_rows
    ids = list(range(1, USERS + 3))  # two users without events: count 0, the rest null
    assert check_online_equals_offline(fs, ids) == len(ids) * 48
    # Values that are not all empty: the data reach the edges the comparison is about.
    online = fs.get_online_features(
        ["user_txn:amount_count_5m", "user_txn:merchant_last3_2h"], {"user_id": ids}
    )
    assert 0 < sum(1 for c in online.to_dict()["amount_count_5m"] if c) < USERS
    assert any(v is not None and len(v) == 3 for v in online.to_dict()["merchant_last3_2h"])
    assert online.statuses["merchant_last3_2h"][-2:] == ["NULL_VALUE", "NULL_VALUE"]
    assert online.to_dict()["amount_count_5m"][-2:] == [0, 0]


def test_an_incremental_run_rewrites_only_entities_with_new_events(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = datetime.now(UTC)
    rng = random.Random(7)
    first = events(rng, now, 300, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": first})
    fs.materialize()
    keys = {k for k in keys_matching(any_redis, "*user_txn@*")}
    before = {k: any_redis.get(k) for k in keys}  # a rewritten value holds the new run's id
    # New events of users 1 and 2 only, one of them late (an hour ago).
    late = events(rng, datetime.now(UTC), 20, timedelta(hours=1), users=2)
    write_parquet(fs.config.repo / "data" / "txns" / "part-1.parquet", late)
    done = fs.materialize_incremental()
    [result] = done.views
    both = pa.concat_tables([first, late])
    assert result.entities == written_values(fs, both, result.end, users={1, 2}) >= 4
    rewritten = {k for k in keys if any_redis.get(k) != before[k]}
    assert rewritten
    assert {k.split(b"}")[0] for k in rewritten} <= {b"{test:user_id=1", b"{test:user_id=2"}
    check_online_equals_offline(fs, list(range(1, USERS + 1)))


def test_windowed_values_expire_with_their_last_window_and_removal_takes_every_group(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = datetime.now(UTC)
    table = events(random.Random(3), now, 50, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": table})
    fs.materialize()
    newest = max(table.column("ts").to_pylist())
    by_group: dict[str, list[int]] = {}
    for key in keys_matching(any_redis, "*user_txn@*"):
        by_group.setdefault(key.decode().rsplit("@", 1)[1], []).append(any_redis.pexpiretime(key))
    assert sorted(by_group) == ["300", "60", "lifetime"]
    assert set(by_group["lifetime"]) == {-1}  # never expires
    newest_ms = (newest - EPOCH) // timedelta(milliseconds=1)
    # The 5-min-hop group keeps a 2 h window: its values go after the newest tile + 2 h.
    assert max(by_group["300"]) <= newest_ms + (2 * 3600 + 300 + 1) * 1000
    assert min(by_group["60"]) > time.time() * 1000  # none already past
    (fs.config.repo / "defs.py").write_text(
        "from featurestore import Entity\nuser = Entity('user', join_keys=['user_id'])\n"
    )
    fs.apply(allow_breaking=True)
    fs.materialize()
    assert keys_matching(any_redis, "*user_txn*") == []


def test_an_entity_whose_tiles_span_the_query_batches_gets_one_whole_value(
    tmp_path: Path, any_redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tile query returns one row per tile, sorted; rows of 3 per batch split nearly every
    # entity's tiles between batches, which must be joined again before encoding.
    monkeypatch.setattr(tile_writer, "BATCH_ROWS", 3)
    table = events(random.Random(5), datetime.now(UTC), 300, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": table})
    fs.materialize()
    ids = list(range(1, USERS + 1))
    assert check_online_equals_offline(fs, ids) == len(ids) * 48
