"""Aggregation views materialized on the Spark engine: the tiles the DuckDB engine writes (the
same keys, expiries and bytes, float states within rounding), through full, incremental and
correcting runs and removal, and lookups equal to the Spark training set at their hop end.

Twin repos over the same files, one per engine, each with its own DuckDB file and Redis
database; both runs of a step see the same clock (``now`` fixed), since the tiles a run
writes start at the oldest one a lookup from ``now`` on may combine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from featurestore.online import materialize
from featurestore.online.materialize import MaterializeResult
from featurestore.online.tile_writer import group_codec
from featurestore.online.tiles import TileGroup, tile_groups
from tests.online.agg_cases import DEFS, check_online_equals_offline, events
from tests.online.helpers import client_of, on_db, run_record, single_redis
from tests.support.redis import RedisClient, keys_matching, redis_dump
from tests.support.repos import copy_example_repo, make_store, write_parquet
from tests.support.spark import use_spark

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("spark")

Dump = dict[bytes, tuple[bytes, int]]
ROUNDED = ("__sum", "__mean", "__m2")  # Float64 states each engine adds up in its own order


def same_tiles(groups: dict[str, TileGroup], want: Dump, got: Dump) -> int:
    """The same keys and expiries, and values equal byte for byte or, decoded, equal with float
    sums, means and moments within 1e-9 relative; how many values differed only so."""
    assert sorted(got) == sorted(want)
    rounded = 0
    for key, (value, expiry) in want.items():
        other, other_expiry = got[key]
        assert other_expiry == expiry, key
        if other == value:
            continue
        group = groups.get(key.decode().split("}:", 1)[1])
        assert group is not None, (key, value, other)  # any other view's values: byte for byte
        codec, fields = group_codec(group), group.fields
        a, b = codec.rows(value), codec.rows(other)
        assert a is not None and b is not None, key
        for field, x, y in zip(fields, a, b, strict=True):
            if field.name.endswith(ROUNDED):
                assert len(x) == len(y) and all(map(close, x, y)), (key, field.name, x, y)
            else:
                assert x == y, (key, field.name, x, y)
        rounded += 1
    return rounded


def close(x: Any, y: Any) -> bool:
    if x is None or y is None:
        return x is y
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def counts(result: MaterializeResult) -> list[tuple[Any, ...]]:
    return [(v.view, v.rows_read, v.entities, v.written, v.corrected) for v in result.views]


class Twins:
    """The aggregation repo on both engines: DuckDB writing to database 1, Spark to the test's."""

    def __init__(self, tmp_path: Path, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
        files = {"txns/part-0.parquet": table}
        self.duck = on_db(make_store(tmp_path / "duck", DEFS, files), 1)
        spark_repo = make_store(tmp_path / "spark", DEFS, files).config.repo
        self.spark = FeatureStore(use_spark(spark_repo))
        self.spark.ingest()
        self.duck_client = client_of(self.duck)
        self.duck_client.flushdb()
        self.monkeypatch = monkeypatch
        self.groups = {g.key_name: g for g in tile_groups(self.spark.get_feature_view("user_txn"))}

    def write(self, name: str, table: pa.Table | None) -> None:
        """Write (or with None, delete) a source file in both repos; the Spark twin ingests it."""
        for fs in (self.duck, self.spark):
            path = fs.config.repo / "data" / "txns" / name
            if table is None:
                path.unlink()
            else:
                write_parquet(path, table)
        self.spark.ingest()

    def materialize(self, spark_client: RedisClient, incremental: bool = False) -> MaterializeResult:
        """Both engines' run at one ``now``; their Redis contents and records compared."""
        now = datetime.now(UTC)
        self.monkeypatch.setattr(materialize, "start_run", partial(START_RUN, now=now))
        duck = self.duck.materialize(incremental=incremental)
        spark = self.spark.materialize(incremental=incremental)
        self.monkeypatch.setattr(materialize, "start_run", START_RUN)
        assert counts(spark) == counts(duck)
        assert run_record(self.spark, spark.run_id) == run_record(self.duck, duck.run_id)
        same_tiles(self.groups, redis_dump(self.duck_client, True), redis_dump(spark_client, True))
        return spark

    def close(self) -> None:
        self.duck_client.close()
        self.duck.close()
        self.spark.close()


START_RUN = materialize.start_run


@pytest.fixture
def twins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, any_redis: RedisClient) -> Iterator[Twins]:
    first = events(random.Random(11), datetime.now(UTC), 400, timedelta(hours=3))
    made = Twins(tmp_path, first, monkeypatch)
    yield made
    made.close()


@single_redis
def test_spark_writes_the_tiles_duckdb_writes(twins: Twins, any_redis: RedisClient) -> None:
    full = twins.materialize(any_redis)
    [view] = full.views
    assert view.entities > 24 and keys_matching(any_redis, "*user_txn@60")  # every group has values
    check_online_equals_offline(twins.spark, list(range(1, 15)))  # the Spark training set

    # Late and new events of users 1 and 2: only they are rewritten, the same way.
    late = events(random.Random(12), datetime.now(UTC), 30, timedelta(hours=1), users=2)
    twins.write("part-1.parquet", late)
    before = redis_dump(any_redis, True)
    incremental = twins.materialize(any_redis, incremental=True)
    changed = {k for k, v in redis_dump(any_redis, True).items() if before.get(k) != v}
    assert changed and {k.split(b"}")[0] for k in changed} <= {b"{test:user_id=1", b"{test:user_id=2"}
    assert incremental.views[0].entities >= 4

    # The file taken away: its events' entities are rewritten from what remains, or deleted.
    twins.write("part-1.parquet", None)
    corrected = twins.materialize(any_redis, incremental=True)
    assert corrected.views[0].corrected == 2

    # A user whose only events go: every group's value removed.
    only = events(random.Random(13), datetime.now(UTC), 5, timedelta(minutes=3), users=1)
    only = only.set_column(0, "user_id", pa.array([99] * only.num_rows, pa.int64()))
    twins.write("part-2.parquet", only)
    twins.materialize(any_redis, incremental=True)
    assert len(keys_matching(any_redis, "{test:user_id=99}*")) == len(twins.groups)
    twins.write("part-2.parquet", None)
    twins.materialize(any_redis, incremental=True)
    assert keys_matching(any_redis, "{test:user_id=99}*") == []


@single_redis
def test_the_example_repo_on_spark_writes_what_duckdb_writes(
    tmp_path: Path, fresh_data: Path, any_redis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every online view of definitions/, driver_trips' tiles among them (data ending this hour)."""
    duck = on_db(FeatureStore(copy_example_repo(tmp_path / "duck", fresh_data)), 1)
    sparky = FeatureStore(use_spark(copy_example_repo(tmp_path / "spark", fresh_data)))
    duck_client = client_of(duck)
    duck_client.flushdb()
    try:
        for fs in (duck, sparky):
            fs.apply()
        now = datetime.now(UTC)
        monkeypatch.setattr(materialize, "start_run", partial(START_RUN, now=now))
        want, got = duck.materialize(), sparky.materialize()
        assert counts(got) == counts(want)
        groups = {g.key_name: g for g in tile_groups(sparky.get_feature_view("driver_trips"))}
        assert len(groups) == 4  # hops of 5 min, 1 h and 1 d, and the lifetime
        # The data end at the top of the hour: the 5-min group (a 1 h window) has values only
        # while its oldest tile still reaches the newest trip.
        trips = pq.read_table(fresh_data / "trips", columns=["event_timestamp"]).column(0)
        newest_us = (pc.max(trips).as_py() - EPOCH) // timedelta(microseconds=1)
        now_us = (now - EPOCH) // timedelta(microseconds=1)
        live = {
            name for name, g in groups.items()
            if g.hop_us is None or newest_us > (g.tile_of(now_us) - g.span) * g.hop_us
        }
        assert len(live) >= 3
        dump = redis_dump(any_redis, True)
        assert {name for name in groups if any(k.endswith(name.encode()) for k in dump)} == live
        same_tiles(groups, redis_dump(duck_client, True), dump)
    finally:
        duck_client.close()
        duck.close()
        sparky.close()


@single_redis
def test_sketch_tiles_are_refused_on_spark(tmp_path: Path, any_redis: RedisClient) -> None:
    """approx_count_distinct hashes DuckDB's text of a value: the Spark run says so and which
    engine to use, rather than writing tiles DuckDB's training sets would not match."""
    sketch = 'Aggregation("units", "approx_count_distinct", window=timedelta(hours=2)),'
    sketched = DEFS.replace("aggregations=[", f"aggregations=[{sketch}", 1)
    table = events(random.Random(3), datetime.now(UTC), 50, timedelta(hours=1))
    repo = make_store(tmp_path / "spark", sketched, {"txns/part-0.parquet": table}).config.repo
    sparky = FeatureStore(use_spark(repo))
    try:
        refused = r"view 'user_txn': approx_count_distinct \(units_approx_count_distinct_2h\)"
        with pytest.raises(InvalidRequestError, match=refused):
            sparky.materialize()
        assert keys_matching(any_redis, "*user_txn@*") == []
    finally:
        sparky.close()
