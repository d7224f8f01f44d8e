"""Rows taken away from a source (a file rewritten or removed) are taken away from Redis too.

Newer-wins writes alone would serve a deleted or backdated row's value forever; ingestion
records the keys that lost rows and the next materialization rewrites them from the rows
that remain, or deletes them.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.catalog import table_exists
from featurestore.storage import connection
from tests.online.helpers import clean_run_dump, single_redis
from tests.online.items import DEFS, HOUR, add_file, items, served
from tests.support.redis import RedisClient, redis_dump
from tests.support.repos import make_store, write_parquet

Row = tuple[int, datetime, datetime | None, int]
IDS = list(range(5))


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@single_redis  # on a cluster: test_cluster_backend.py
def test_removed_newest_rows_give_way_to_the_rows_that_remain(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = now_s()
    fs = make_store(
        tmp_path / "repo", DEFS, {"items/part-1.parquet": items([(i, now - 5 * HOUR, None, i) for i in IDS])},
        project="online",
    )
    add_file(fs, "part-2.parquet", [(1, now - HOUR, None, 10), (2, now - HOUR, None, 20)])
    fs.materialize()
    assert served(fs, [1, 2]) == [10, 20]
    add_file(fs, "part-2.parquet", [(2, now - HOUR, None, 21)])  # item 1's newer row is gone
    result = fs.materialize()
    assert served(fs, [1, 2]) == [1, 21]
    assert result.views[0].corrected == 2  # both keys of the old file, rewritten from what remains
    assert redis_dump(any_redis) == clean_run_dump(fs)


def test_a_removed_file_deletes_keys_left_without_rows(tmp_path: Path, any_redis: RedisClient) -> None:
    now = now_s()
    fs = make_store(
        tmp_path / "repo", DEFS, {"items/part-1.parquet": items([(0, now - HOUR, None, 0)])}, project="online"
    )
    add_file(fs, "part-2.parquet", [(7, now - HOUR, None, 70), (0, now - HOUR / 2, None, 5)])
    fs.materialize_incremental()
    assert served(fs, [0, 7]) == [5, 70]
    (fs.config.repo / "data" / "items" / "part-2.parquet").unlink()
    fs.materialize_incremental()
    assert served(fs, [0, 7]) == [0, None]
    assert b"{online:id=7}:items" not in redis_dump(any_redis)
    assert fs.materialize_incremental().views[0].corrected == 0  # done once


def test_a_backdated_row_is_served_as_the_training_set_has_it(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    now = now_s()
    fs = make_store(
        tmp_path / "repo",
        DEFS,
        {
            "items/part-1.parquet": items([(3, now - 3 * HOUR, None, 30)]),
            "items/part-2.parquet": items([(3, now - HOUR, None, 31)]),
        },
        project="online",
    )
    fs.materialize()
    add_file(fs, "part-2.parquet", [(3, now - 4 * HOUR, None, 31)])  # corrected: it happened earlier
    fs.materialize(end=now)
    entity = {"id": [3], "event_timestamp": [now]}
    offline = fs.get_training_set(pd.DataFrame(entity), ["items:v"]).to_pandas()["v"].tolist()
    assert served(fs, [3]) == offline == [30]


def reference(files: dict[str, list[Row]], now: datetime) -> list[int | None]:
    """Plain Python: per id, the newest row (event time, then created time) of the files now on disk."""
    best: dict[int, tuple[datetime, datetime, int]] = {}
    never = datetime.min.replace(tzinfo=UTC)
    for rows in files.values():
        for key, event, created, value in rows:
            if event >= now:
                continue
            rank = (event, created or never, value)
            if key not in best or rank[:2] > best[key][:2]:
                best[key] = rank
    return [best[i][2] if i in best else None for i in IDS]


# One step: write (or rewrite) a file with some rows, or remove it; then materialize.
steps = st.lists(
    st.tuples(
        st.sampled_from(["write", "remove"]),
        st.sampled_from(["part-a.parquet", "part-b.parquet", "part-c.parquet"]),
        st.lists(st.tuples(st.sampled_from(IDS), st.integers(1, 6)), max_size=4),
        st.booleans(),  # incremental or full
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_redis_follows_the_sources_through_rewrites_and_removals(
    redis_client: redis.Redis, plan: list[tuple[str, str, list[tuple[int, int]], bool]]
) -> None:
    redis_client.flushall()
    now = now_s()
    counter = iter(range(1, 10_000))
    with tempfile.TemporaryDirectory() as tmp:
        first = [(i, now - 10 * HOUR, None, -i) for i in IDS]
        fs = make_store(Path(tmp) / "repo", DEFS, {"items/part-0.parquet": items(first)}, project="online")
        files: dict[str, list[Row]] = {"part-0.parquet": first}
        for op, name, picks, incremental in plan:
            path = fs.config.repo / "data" / "items" / name
            if op == "write":
                # Created times are distinct, so no two rows tie and the reference needs no file order.
                rows = [
                    (i, now - h * HOUR, now + timedelta(seconds=next(counter)), next(counter))
                    for i, h in picks
                ]
                add_file(fs, name, rows)
                stamp = 1_000_000_000 + next(counter)  # a new mtime, whatever the clock's resolution
                os.utime(path, (stamp, stamp))
                files[name] = rows
            elif path.exists():
                path.unlink()
                del files[name]
            fs.materialize_incremental() if incremental else fs.materialize()
            assert served(fs, IDS) == reference(files, now)
        assert redis_dump(redis_client) == clean_run_dump(fs)
        fs.close()


@single_redis
def test_a_rebuilt_view_rewrites_keys_whose_rows_went_with_the_rebuild(
    tmp_path: Path, any_redis: RedisClient
) -> None:
    now = now_s()
    fs = make_store(
        tmp_path / "repo",
        DEFS,
        {
            "items/part-1.parquet": items([(1, now - 3 * HOUR, None, 1), (2, now - 3 * HOUR, None, 2)]),
            "items/part-2.parquet": items([(1, now - HOUR, None, 10)]),
        },
        project="online",
    )
    fs.materialize()
    (fs.config.repo / "data" / "items" / "part-2.parquet").unlink()
    defs = fs.config.repo / "defs.py"
    defs.write_text(defs.read_text().replace('Field("v", Int64)', 'Field("v", Int64), Field("w", Int64)'))
    table = items([(1, now - 3 * HOUR, None, 1), (2, now - 3 * HOUR, None, 2)])
    write_parquet(fs.config.repo / "data" / "items" / "part-1.parquet", table.append_column("w", table["v"]))
    fs = FeatureStore(fs.config.repo)
    fs.apply()
    result = fs.materialize()
    assert result.ingestion[0].rebuilt
    assert served(fs, [1, 2]) == [1, 2]


def test_offline_only_views_keep_no_retractions(tmp_path: Path) -> None:
    now = now_s()
    defs = DEFS.replace('schema=[Field("v", Int64)])', 'schema=[Field("v", Int64)], online=False)')
    fs = make_store(
        tmp_path / "repo", defs, {"items/part-1.parquet": items([(1, now - HOUR, None, 1)])}, project="online"
    )
    fs.ingest()
    add_file(fs, "part-1.parquet", [(1, now - HOUR, None, 2)])
    fs.ingest()
    with connection(fs.config.duckdb_path, read_only=True) as con:
        assert not table_exists(con, fs.config.project, "retracted_items")
