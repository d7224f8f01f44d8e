"""Pushes to an aggregation view: the pushed entities' tiles are recomputed at once, so a lookup
right after the push equals a plain-Python evaluation of the windows over the source's and the
pushed events, and, once the push is ingested, the training set at the end of the lookup's
hop; late events, events outside every window, corrections and new entities included."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import StoreLockedError
from featurestore.offline import push_log
from featurestore.online import push_tiles
from featurestore.online.codec import PUSHED_RUN_ID
from featurestore.online.tiles import tile_groups
from tests.offline.agg_reference import aggregate
from tests.offline.reference import SourceRow
from tests.online.agg_cases import (
    DEFS,
    check_online_equals_offline,
    events,
    hop_end,
    lookup_within_one_hop,
    same,
)
from tests.online.helpers import TZ
from tests.support.repos import make_store

COLUMNS = ["user_id", "ts", "created", "amount", "units", "merchant"]
TYPES = [pa.int64(), TZ, TZ, pa.float64(), pa.int64(), pa.string()]
Event = tuple[int, datetime, datetime | None, float | None, int | None, str | None]


def table(rows: list[Event]) -> pa.Table:
    return pa.table(
        {c: pa.array([r[i] for r in rows], t) for i, (c, t) in enumerate(zip(COLUMNS, TYPES, strict=True))}
    )


def source_rows(tables: list[pa.Table]) -> list[SourceRow]:
    """The reference's rows: files in ingestion order (the source's, then pushes in order)."""
    out = []
    for f, t in enumerate(tables):
        for i, row in enumerate(t.to_pylist()):
            values = {c: row[c] for c in ("amount", "units", "merchant")}
            out.append(SourceRow((row["user_id"],), row["ts"], row["created"], (f, i), values))
    return out


def specs(fs: FeatureStore) -> list[tuple[Any, ...]]:
    view = fs.get_feature_view("user_txn")
    return [(a.column, a.function, a.window, a.n) for a in view.aggregations]


def lookup_and_reference(
    fs: FeatureStore, ids: list[int], tables: list[pa.Table], windowed_only: bool = False
) -> int:
    """Look up every feature now; compare with the plain-Python windows at each group's hop end
    over ``tables``' events. Retried when the clock crosses a hop boundary. Values compared."""
    groups = [g for g in tile_groups(fs.get_feature_view("user_txn")) if g.hop_us or not windowed_only]
    online, after = lookup_within_one_hop(fs, groups, ids)
    rows = source_rows(tables)
    compared = 0
    for g in groups:
        at = hop_end(g.hop_us, after) if g.hop_us else datetime.now(UTC)
        wanted = [(a.column, a.function, a.window, a.n) for a in g.aggregations]
        expected = aggregate([(u,) for u in ids], [at] * len(ids), rows, wanted)
        for a in g.aggregations:
            for i, user in enumerate(ids):
                got, want = online[a.name][i], expected[i][a.name]
                if isinstance(want, float) and isinstance(got, float):
                    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (a.name, user, got, want)
                else:
                    assert same(got, want), (a.name, user, got, want, at)
                compared += 1
    return compared


@pytest.fixture
def store(tmp_path: Path, redis_client: redis.Redis) -> tuple[FeatureStore, pa.Table]:
    now = datetime.now(UTC)
    source = events(random.Random(23), now, 300, timedelta(hours=3))
    fs = make_store(tmp_path / "repo", DEFS, {"txns/part-0.parquet": source})
    fs.materialize()
    return fs, source


def test_a_lookup_right_after_a_push_holds_the_pushed_events_and_equals_the_training_set_once_ingested(
    store: tuple[FeatureStore, pa.Table], redis_client: redis.Redis
) -> None:
    fs, source = store
    now = datetime.now(UTC).replace(microsecond=0)
    corrected = next(r for r in source.to_pylist() if r["user_id"] == 4)
    tied = next(r for r in source.to_pylist() if r["user_id"] == 5)
    first = table(
        [
            (1, now - timedelta(seconds=2), None, 7.5, 3, "p"),  # the newest of user 1
            (2, now - timedelta(minutes=40), None, 100.0, 50, "q"),  # late: older than user 2's newest
            (3, now - timedelta(hours=5), None, 9.0, 1, "r"),  # outside every window but the lifetime
            # a correction: same user and time as a source event, created after it
            (4, corrected["ts"], now, -1.0, None, "s"),
            (20, now - timedelta(minutes=1), None, 2.0, 2, "t"),  # an entity with no event before
            # a full tie with a source event (same time and created time): the push wins
            (5, tied["ts"], tied["created"], 1e6, 99, "w"),
        ]
    )
    ids = [1, 2, 3, 4, 5, 20, 21]
    windowed = [
        f"user_txn:{a.name}"
        for g in tile_groups(fs.get_feature_view("user_txn"))
        if g.hop_us
        for a in g.aggregations
    ]
    user3_before = fs.get_online_features(windowed, {"user_id": [3]}).to_dict()
    result = fs.push("user_txn", first)
    assert (result.rows, result.written, result.expired) == (6, 6, 0)  # every view has a lifetime group
    lookup_and_reference(fs, ids, [source, first])
    # the event outside every window changed none of user 3's windowed values
    assert fs.get_online_features(windowed, {"user_id": [3]}).to_dict() == user3_before
    # A second push of user 1: its tiles hold both pushes (the first is not ingested yet).
    second = table([(1, now - timedelta(seconds=1), None, 1.25, 4, "u")])
    fs.push("user_txn", second)
    compared = lookup_and_reference(fs, ids, [source, first, second])
    assert compared == len(ids) * 48
    runs = fs.get_online_features(["user_txn:amount_count_5m"], {"user_id": [1]}, with_run_ids=True)
    assert runs.run_ids == {"user_txn@60": [PUSHED_RUN_ID]}
    # Ingested (no materialization): the training set agrees with what the push wrote.
    fs.ingest()
    assert check_online_equals_offline(fs, ids) == len(ids) * 48
    # and a materialization writes the same values again
    fs.materialize_incremental()
    lookup_and_reference(fs, ids, [source, first, second])


def test_a_push_while_the_store_file_is_held_stays_durable_and_the_next_materialization_writes_it(
    store: tuple[FeatureStore, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, source = store
    now = datetime.now(UTC).replace(microsecond=0)
    pushed = table([(1, now - timedelta(seconds=1), None, 5.0, 5, "x")])
    fs.get_online_features(["user_txn:amount_count_5m"], {"user_id": [1]})  # the registry, read now
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(60)",
            str(fs.config.duckdb_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(push_tiles, "LOCK_TIMEOUT", 0.2)
        with pytest.raises(StoreLockedError, match="durable offline but its tiles were not recomputed"):
            fs.push("user_txn", pushed)
    finally:
        holder.kill()
        holder.wait()
    assert len(push_log.pushed_files(fs.config.store_dir, "user_txn")) == 1
    fs.materialize_incremental()
    lookup_and_reference(fs, [1, 2], [source, pushed])


def test_pushed_events_past_every_window_write_nothing_but_lifetime_values(
    store: tuple[FeatureStore, pa.Table], redis_client: redis.Redis
) -> None:
    fs, source = store
    now = datetime.now(UTC).replace(microsecond=0)
    old = table([(30, now - timedelta(days=3), None, 1.0, 1, "o")])  # a new user, long ago
    result = fs.push("user_txn", old)
    assert (result.written, result.expired) == (1, 0)  # in the lifetime group's value only
    assert [k for k in redis_client.keys("*user_id=30*")] == [b"{test:user_id=30}:user_txn@lifetime"]
    lookup_and_reference(fs, [30], [source, old])


def test_an_event_from_a_clock_ahead_of_ours_is_served_as_the_online_rule_says(
    store: tuple[FeatureStore, pa.Table],
) -> None:
    """An event a little after now (the caller's clock ahead) lands in its tile: a lookup
    serves it as the training set at the end of the lookup's hop has it; the lifetime count
    holds it at once."""
    fs, source = store
    lifetime = ["user_txn:amount_count_lifetime"]
    before = fs.get_online_features(lifetime, {"user_id": [7]}).to_dict()["amount_count_lifetime"][0]
    ahead = table([(7, datetime.now(UTC) + timedelta(seconds=2), None, 3.0, 1, "f")])
    assert fs.push("user_txn", ahead).written == 1
    lookup_and_reference(fs, [7], [source, ahead], windowed_only=True)
    assert fs.get_online_features(lifetime, {"user_id": [7]}).to_dict()["amount_count_lifetime"] == [
        before + 1
    ]
