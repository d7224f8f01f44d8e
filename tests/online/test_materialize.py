"""Materialize, then look up: Redis serves the newest source row of every entity, within TTL.

The expected answers come from tests/online/helpers.py's plain-Python reference, which reads
the Parquet files directly; the store never sees them except through ingestion.
"""

from __future__ import annotations

import itertools
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError, NotFoundError, OnlineStoreUnavailable
from featurestore.online.materialize import DEFAULT_MEMORY_LIMIT, EXPIRED_GRACE
from featurestore.serving.fastpath import fast_encoder
from tests.online.helpers import TZ, client_of, columns, expected_lookup, lookup, newest_rows, single_redis
from tests.support.redis import RedisClient, redis_dump, value_keys
from tests.support.repos import edit, make_store, write_parquet

TRIPS = """
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource, String

trip = Entity("trip", join_keys=["id", "zone"])
trips = FeatureView(
    "trips", entities=[trip],
    source=ParquetSource("trips_src", path="data/trips", timestamp_field="ts",
                         created_timestamp_field="created"),
    schema=[Field("count", Int64), Field("score", Float64), Field("label", String)],
    on_invalid="quarantine")  # rows without a key or event time are set aside, never served
"""
TRIP_KEYS = ["id", "zone"]
TRIP_FEATURES = ["count", "score", "label"]
# Zones that would forge key separators if they were not escaped.
ZONES = ["a", "b:{x}", "é=,"]
# Without a TTL nothing is too old to materialize, so fixed times keep examples reproducible.
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def trips_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "zone": pa.array([r["zone"] for r in rows], pa.string()),
            "ts": pa.array([r["ts"] for r in rows], TZ),
            "created": pa.array([r["created"] for r in rows], TZ),
            "count": pa.array([r["count"] for r in rows], pa.int64()),
            "score": pa.array([r["score"] for r in rows], pa.float64()),
            "label": pa.array([r["label"] for r in rows], pa.string()),
        }
    )


def maybe(strategy: st.SearchStrategy[Any], null_chance: int = 4) -> st.SearchStrategy[Any]:
    """``strategy``, or None about one time in ``null_chance``."""
    return st.integers(1, null_chance).flatmap(lambda i: st.none() if i == 1 else strategy)


# Few keys and coarse times, so exact ties and re-deliveries are common.
minutes = st.integers(0, 2).map(lambda m: BASE + timedelta(minutes=m))
trip_rows = st.fixed_dictionaries(
    {
        "id": maybe(st.integers(0, 1), 10),
        "zone": maybe(st.sampled_from(ZONES), 10),
        "ts": maybe(minutes, 10),
        "created": maybe(st.integers(0, 1).map(lambda m: BASE + timedelta(minutes=m)), 3),
        "count": maybe(st.integers(-(2**63), 2**63 - 1)),
        "score": maybe(st.floats(allow_nan=False)),
        "label": maybe(st.text(max_size=4)),
    }
)
# Every entity the data can hold, and some it cannot (id 9, zone "zz"): NOT_FOUND.
ALL_TRIPS = list(itertools.product([0, 1, 9], [*ZONES, "zz"]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(trip_rows, max_size=10), min_size=1, max_size=3))
def test_lookups_serve_the_newest_row_of_each_entity(
    files: list[list[dict[str, Any]]], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # One repo for all examples (applying is the slow part): each example replaces the
    # files, which ingestion notices, and materializes into an empty Redis.
    repo, folder = tmp_path / "repo", tmp_path / "repo" / "data" / "trips"
    shutil.rmtree(folder, ignore_errors=True)
    tables = {f"trips/part-{i}.parquet": trips_table(rows) for i, rows in enumerate(files)}
    if (repo / "defs.py").exists():
        for name, table in tables.items():
            write_parquet(repo / "data" / name, table)
        fs = FeatureStore(repo)
    else:
        fs = make_store(repo, TRIPS, tables, project="online")
    redis_client.flushall()
    fs.materialize()
    newest = newest_rows(sorted(folder.iterdir()), TRIP_KEYS, "ts", "created")
    got = lookup(fs, [f"trips:{f}" for f in TRIP_FEATURES], columns(ALL_TRIPS, TRIP_KEYS))
    assert got == expected_lookup(newest, TRIP_KEYS, ALL_TRIPS, TRIP_FEATURES)
    assert redis_client.dbsize() == len(newest) + 1  # one key per entity, and the project's marker


@single_redis  # on a cluster: test_cluster_backend.py
def test_example_data_serves_the_newest_row_of_every_entity(
    example_repo: Path, any_redis: RedisClient
) -> None:
    for name in ("drivers.py", "customers.py"):  # the tiny data is older than any TTL from now
        path = example_repo / name
        path.write_text(re.sub(r"ttl=timedelta\([^)]*\)", "ttl=None", path.read_text()))
    fs = FeatureStore(example_repo)
    fs.apply()
    fs.materialize()
    for view, key in (("driver_stats", "driver_id"), ("customer_profile", "customer_id")):
        features = [f.name for f in fs.get_feature_view(view).features]
        files = sorted((example_repo / "data" / view).glob("*.parquet"))
        newest = newest_rows(files, [key], "event_timestamp", "created")
        entities = sorted(newest) + [(1,), (99_999,)]
        got = lookup(fs, [f"{view}:{f}" for f in features], columns(entities, [key]))
        assert got == expected_lookup(newest, [key], entities, features), view
    # A service spans both views: the same values, both keys in one request.
    drivers, customers = [(1001,), (1002,), (5,)], [(5001,), (1,), (5002,)]
    both = fs.get_online_features(
        "trip_model", {"driver_id": [1001, 1002, 5], "customer_id": [5001, 1, 5002]}
    )
    alone = fs.get_online_features(
        ["driver_stats:rating", "customer_profile:lifetime_orders"],
        {"driver_id": [d for (d,) in drivers], "customer_id": [c for (c,) in customers]},
    )
    assert both.to_dict()["rating"] == alone.to_dict()["rating"]
    assert both.statuses["lifetime_orders"] == ["PRESENT", "NOT_FOUND", "PRESENT"]


# -- TTL ---------------------------------------------------------------------------------

TTL_DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item], ttl=timedelta(hours=2),
                    source=ParquetSource("items_src", path="data/items.parquet", timestamp_field="ts"),
                    schema=[Field("v", Int64)])
"""
TTL = timedelta(hours=2)


def test_ttl_decides_present_expired_and_not_written(tmp_path: Path, any_redis: RedisClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ages = {
        1: [timedelta(minutes=10)],  # fresh: PRESENT
        2: [TTL + timedelta(minutes=30)],  # past its TTL, within the grace: EXPIRED
        # Past the grace, two rows: never written.
        3: [TTL + EXPIRED_GRACE + timedelta(minutes=10), TTL + EXPIRED_GRACE + timedelta(minutes=5)],
        4: [timedelta(hours=5), timedelta(hours=1)],
    }  # the old row is skipped, the new one served
    rows = [(i, now - age, 10 * i + n) for i, group in ages.items() for n, age in enumerate(group)]
    fs = make_store(
        tmp_path / "repo",
        TTL_DEFS,
        {
            "items.parquet": pa.table(
                {
                    "id": pa.array([r[0] for r in rows], pa.int64()),
                    "ts": pa.array([r[1] for r in rows], TZ),
                    "v": pa.array([r[2] for r in rows], pa.int64()),
                }
            )
        },
        project="online",
    )
    result = fs.materialize()
    assert result.rows_read == 3 and result.written == 3  # items 1, 2 and 4's newer row
    assert result.expired == 3  # rows, not entities: item 3's two rows and item 4's older one

    got = fs.get_online_features(["items:v"], {"id": [1, 2, 3, 4]})
    assert got.statuses == {"v": ["PRESENT", "EXPIRED", "NOT_FOUND", "PRESENT"]}
    assert got.to_dict()["v"] == [10, None, None, 41]
    # An expired value still says when it was true.
    micros = got.features[0].event_ts_us
    assert micros[1] == int((now - ages[2][0]).timestamp() * 1_000_000) and micros[2] is None

    stored = {int(k.split(b"=")[1].split(b"}")[0]): k for k in value_keys(any_redis)}
    assert sorted(stored) == [1, 2, 4]
    for i, key in stored.items():
        event = now - ages[i][-1]
        expected = int((event + TTL + EXPIRED_GRACE).timestamp() * 1000)
        assert any_redis.pexpiretime(key) == expected, i


MEMORY_DEFS = f"""{TTL_DEFS}
from featurestore import Aggregation
counts = FeatureView("counts", entities=[item], source=items.source, schema=[Field("v", Int64)],
                     aggregations=[Aggregation("v", "sum", window=timedelta(hours=1))])
"""


def _shown(limit: str | None) -> str:
    """How current_setting('memory_limit') prints ``limit`` (None: DuckDB's default)."""
    con = duckdb.connect()
    if limit:
        con.execute("SET memory_limit = ?", [limit])
    shown = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.close()
    return str(shown[0])  # type: ignore[index]


@pytest.mark.parametrize("configured", [None, "256MB"])
def test_materialization_bounds_duckdb_memory_unless_configured(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, configured: str | None
) -> None:
    """Without a memory_limit, plain and aggregation views are materialized under
    DEFAULT_MEMORY_LIMIT (DuckDB's own default, 80% of RAM, let materialization's memory grow
    with the data; tiles run in buckets to fit it); a configured limit holds for both."""
    if configured:
        monkeypatch.setenv("FEATURESTORE_DUCKDB_MEMORY_LIMIT", configured)
    else:
        monkeypatch.delenv("FEATURESTORE_DUCKDB_MEMORY_LIMIT", raising=False)
    now = datetime.now(UTC).replace(microsecond=0)
    items = pa.table({"id": pa.array([1, 2], pa.int64()), "ts": pa.array([now, now], TZ), "v": [1, 2]})
    fs = make_store(tmp_path / "repo", MEMORY_DEFS, {"items.parquet": items}, project="online")
    seen: dict[str, set[str]] = {}

    def progress(name: str, done: int, total: int) -> None:
        # While the run reads, the file's database is open read-only in this process: DuckDB
        # hands this connection the same database, so it reads the run's setting.
        try:
            con = duckdb.connect(str(fs.config.duckdb_path), read_only=True)
        except duckdb.ConnectionException:  # ingestion's steps: its write connection is open
            return
        setting = con.execute("SELECT current_setting('memory_limit')").fetchone()
        seen.setdefault(name.split("@")[0], set()).add(str(setting[0]))  # type: ignore[index]
        con.close()

    assert fs.materialize(progress=progress).written == 2 + 2
    assert _shown(DEFAULT_MEMORY_LIMIT) != _shown(None)
    assert seen == {
        "items": {_shown(configured or DEFAULT_MEMORY_LIMIT)},
        "counts": {_shown(configured or DEFAULT_MEMORY_LIMIT)},
    }


def test_a_view_without_ttl_keeps_every_entity_forever(tmp_path: Path, redis_client: redis.Redis) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    fs = make_store(
        tmp_path / "repo",
        TTL_DEFS.replace("ttl=timedelta(hours=2)", "ttl=None"),
        {
            "items.parquet": pa.table(
                {
                    "id": pa.array([1], pa.int64()),
                    "ts": pa.array([long_ago], TZ),
                    "v": pa.array([7], pa.int64()),
                }
            )
        },
        project="online",
    )
    fs.materialize()
    assert lookup(fs, ["items:v"], {"id": [1]}) == ({"id": [1], "v": [7]}, {"v": ["PRESENT"]})
    assert [redis_client.pttl(k) for k in value_keys(redis_client)] == [-1]



def test_the_ttl_boundary_online_is_the_training_sets_one(tmp_path: Path, redis_client: redis.Redis) -> None:
    # A value exactly TTL old is served, a microsecond older is EXPIRED, online (general and
    # fast path) as offline. Lookups take the clock as an argument, so the boundary is exact.
    event = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123_457)
    table = pa.table(
        {"id": pa.array([1], pa.int64()), "ts": pa.array([event], TZ), "v": pa.array([7], pa.int64())}
    )
    fs = make_store(tmp_path / "repo", TTL_DEFS, {"items.parquet": table}, project="online")
    fs.materialize()
    exact, past = event + TTL, event + TTL + timedelta(microseconds=1)

    plan = fs.online_registry().plan(("items:v",))
    n, entities = plan.entity_columns({"id": [1]})
    raw = cast(list[bytes | None], redis_client.mget(plan.keys(n, entities)))
    online = [plan.assemble(n, entities, raw, now=now).statuses["v"] for now in (exact, past)]
    assert online == [["PRESENT"], ["EXPIRED"]]
    encoder = fast_encoder(plan)  # answers only when every value is live, else defers
    assert encoder is not None
    micros = [(now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) for now in (exact, past)]
    assert [encoder.encode(n, raw, 1, us) is not None for us in micros] == [True, False]

    frame = pa.table({"id": pa.array([1, 1], pa.int64()), "event_timestamp": pa.array([exact, past], TZ)})
    with fs.get_training_set(frame, ["items:v"]) as ts:
        assert ts.to_arrow().column("v").to_pylist() == [7, None]


# -- removing a view -----------------------------------------------------------------------

TWO_VIEWS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
stats = FeatureView("stats", entities=[driver],
                    source=ParquetSource("stats_src", path="data/stats.parquet", timestamp_field="ts"),
                    schema=[Field("trips", Int64)])
zones = FeatureView("zones", entities=[driver],
                    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
                    schema=[Field("zone", String)])
"""
ZONES_VIEW = TWO_VIEWS[TWO_VIEWS.index("zones = ") :]


def two_views(repo: Path, project: str = "online", trips: int = 0) -> FeatureStore:
    """Drivers 1..5 in views stats (trips: ``trips``, ``trips + 1``, ...) and zones."""
    at = datetime.now(UTC) - timedelta(hours=1)
    ids = pa.array(range(1, 6), pa.int64())
    return make_store(
        repo,
        TWO_VIEWS,
        {
            "stats.parquet": pa.table(
                {"driver_id": ids, "ts": pa.array([at] * 5, TZ), "trips": pa.array(range(trips, trips + 5))}
            ),
            "zones.parquet": pa.table(
                {"driver_id": ids, "ts": pa.array([at] * 5, TZ), "zone": list("abcde")}
            ),
        },
        project=project,
    )


def keys_of(client: RedisClient, view: str) -> set[bytes]:
    return {k for k in client.scan_iter() if k.endswith(b"}:" + view.encode())}


@single_redis  # on a cluster: test_cluster_backend.py
@pytest.mark.parametrize("change", ["remove", "offline"])
def test_a_view_gone_from_online_loses_its_keys_and_only_those(
    tmp_path: Path, any_redis: RedisClient, change: str
) -> None:
    fs = two_views(tmp_path / "repo")
    fs.materialize()
    before = redis_dump(any_redis)
    assert len(keys_of(any_redis, "zones")) == 5 and len(keys_of(any_redis, "stats")) == 5

    defs = tmp_path / "repo" / "defs.py"
    if change == "remove":
        edit(defs, ZONES_VIEW, "")
    else:
        edit(defs, 'schema=[Field("zone", String)]', 'schema=[Field("zone", String)], online=False')
    fs.apply(allow_breaking=True)
    result = fs.materialize()

    assert result.removed == {"zones": 5}
    assert keys_of(any_redis, "zones") == set()
    assert redis_dump(any_redis) == {k: v for k, v in before.items() if k.endswith(b":stats")}
    assert fs.materialize().removed == {}  # done once, not on every run
    fresh = FeatureStore(fs.config.repo)  # see the report: fs itself caches the old registry
    if change == "remove":
        with pytest.raises(NotFoundError, match="unknown feature view 'zones'"):
            fresh.get_online_features(["zones:zone"], {"driver_id": [1]})
    else:
        with pytest.raises(InvalidRequestError, match="'zones' is not online"):
            fresh.get_online_features(["zones:zone"], {"driver_id": [1]})
    assert lookup(fresh, ["stats:trips"], {"driver_id": [1]})[0]["trips"] == [0]


def test_a_removal_survives_an_unreachable_redis(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, closed_redis_url: str
) -> None:
    fs = two_views(tmp_path / "repo")
    fs.materialize()
    edit(tmp_path / "repo" / "defs.py", ZONES_VIEW, "")
    fs.apply(allow_breaking=True)
    with monkeypatch.context() as m:
        m.setenv("FEATURESTORE_REDIS_URL", closed_redis_url)
        with pytest.raises(OnlineStoreUnavailable):
            FeatureStore(fs.config.repo).materialize()
    assert len(keys_of(redis_client, "zones")) == 5
    assert FeatureStore(fs.config.repo).materialize().removed == {"zones": 5}
    assert keys_of(redis_client, "zones") == set() and len(keys_of(redis_client, "stats")) == 5


@single_redis  # on a cluster: test_cluster_backend.py
def test_materialize_writes_one_key_per_entity_and_view(tmp_path: Path, any_redis: RedisClient) -> None:
    fs = two_views(tmp_path / "repo")
    result = fs.materialize()
    assert [(v.view, v.rows_read, v.entities, v.written, v.kept_newer) for v in result.views] == [
        ("stats", 5, 5, 5, 0),
        ("zones", 5, 5, 5, 0),
    ]
    assert sorted(value_keys(client_of(fs)))[:2] == [
        b"{online:driver_id=1}:stats",
        b"{online:driver_id=1}:zones",
    ]
    only = fs.materialize(views=["zones"])
    assert [v.view for v in only.views] == ["zones"]
    assert len(value_keys(any_redis)) == 10


def test_projects_sharing_a_redis_keep_apart(tmp_path: Path, redis_client: redis.Redis) -> None:
    ours = two_views(tmp_path / "ours", "ours", trips=0)
    theirs = two_views(tmp_path / "theirs", "theirs", trips=100)
    ours.materialize()
    theirs.materialize()
    assert len(value_keys(redis_client)) == 20
    assert sorted(redis_client.keys("*:online-epoch")) == [b"{ours}:online-epoch", b"{theirs}:online-epoch"]
    assert lookup(ours, ["stats:trips"], {"driver_id": [1]})[0]["trips"] == [0]
    assert lookup(theirs, ["stats:trips"], {"driver_id": [1]})[0]["trips"] == [100]
    edit(tmp_path / "ours" / "defs.py", ZONES_VIEW, "")
    ours.apply(allow_breaking=True)
    assert ours.materialize().removed == {"zones": 5}
    assert len(keys_of(redis_client, "zones")) == 5  # theirs
    assert lookup(theirs, ["zones:zone"], {"driver_id": [5]})[0]["zone"] == ["e"]


def test_materializing_an_unknown_view_is_refused(tmp_path: Path, redis_client: redis.Redis) -> None:
    fs = two_views(tmp_path / "repo")
    with pytest.raises(NotFoundError, match="no feature view named 'ghost'"):
        fs.materialize(views=["ghost"])
    assert redis_client.dbsize() == 0
