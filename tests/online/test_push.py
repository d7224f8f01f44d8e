"""FeatureStore.push: validated, durable offline in the push log, written online newer-wins at
once; what a push does when one side fails; what ingestion, training sets and lineage see."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.errors import (
    DefinitionError,
    InvalidRequestError,
    InvalidRowsError,
    OnlineStoreUnavailable,
    PushLogUnavailable,
    RunInProgressError,
    SourceError,
)
from featurestore.offline import push_log
from featurestore.online import push as push_module
from featurestore.online.codec import PUSHED_RUN_ID
from featurestore.runlock import exclusive_run
from tests.online.helpers import TZ
from tests.support.cli import run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.repos import make_store

DEFS = """
from datetime import timedelta
from pandera.pandas import Check
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource, String

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item], ttl=timedelta(days=30),
                    source=ParquetSource("items_src", path="data/items", timestamp_field="ts",
                                         created_timestamp_field="created"),
                    schema=[Field("v", Int64, checks=[Check.ge(0)]), Field("name", String)])
"""
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)
Row = tuple[int, datetime, datetime | None, int]


def rows(*given: Row) -> pa.Table:
    """(id, event time, created time, v) rows, named ``item {id}``."""
    return pa.table(
        {
            "id": pa.array([r[0] for r in given], pa.int64()),
            "ts": pa.array([r[1] for r in given], TZ),
            "created": pa.array([r[2] for r in given], TZ),
            "v": pa.array([r[3] for r in given], pa.int64()),
            "name": [f"item {r[0]}" for r in given],
        }
    )


@pytest.fixture
def store(tmp_path: Path, redis_client: redis.Redis) -> FeatureStore:
    """Items 0..2 at two hours ago, materialized."""
    fs = make_store(
        tmp_path / "repo",
        DEFS,
        {"items/part-0.parquet": rows(*[(i, NOW - 2 * HOUR, None, i) for i in range(3)])},
        project="push",
    )
    fs.materialize()
    return fs


def served(fs: FeatureStore, ids: list[int]) -> list[int | None]:
    return list(fs.get_online_features(["items:v"], {"id": ids}).to_dict()["v"])


def push_files(fs: FeatureStore, hidden: bool = False) -> list[Path]:
    folder = push_log.push_folder(fs.config.store_dir, "items")
    return (
        sorted(p for p in folder.glob("*") if hidden or not p.name.startswith(".")) if folder.exists() else []
    )


def item_keys(client: redis.Redis) -> list[bytes]:
    return [k for k in client.keys() if k.endswith(b":items")]


def as_of(fs: FeatureStore, ids: list[int], at: datetime) -> list[int | None]:
    entities = pa.table({"id": pa.array(ids, pa.int64()), "event_timestamp": pa.array([at] * len(ids), TZ)})
    with fs.get_training_set(entities, ["items:v"]) as ts:
        table = ts.to_arrow().sort_by("id")
    return list(table.column("v").to_pylist())


def test_pushed_rows_are_served_at_once(store: FeatureStore) -> None:
    result = store.push("items", rows((1, NOW - HOUR, None, 100), (7, NOW - HOUR, None, 700)))
    assert (result.rows, result.written, result.kept_newer, result.expired) == (2, 2, 0, 0)
    assert result.file.parent == store.config.store_dir / "push" / "items"
    assert served(store, [0, 1, 7]) == [0, 100, 700]
    runs = store.get_online_features(["items:v"], {"id": [0, 1]}, with_run_ids=True).run_ids["items"]
    assert runs[1] == PUSHED_RUN_ID and runs[0] != PUSHED_RUN_ID
    store.gc(keep_runs=1)  # reads every served run id, the pushed one too
    assert served(store, [1]) == [100]


def test_an_older_push_never_replaces_a_newer_value(store: FeatureStore) -> None:
    store.push("items", rows((1, NOW - HOUR, None, 100)))
    older = store.push("items", rows((1, NOW - 90 * 60 * timedelta(seconds=1), None, 50)))
    assert (older.written, older.kept_newer) == (0, 1)
    stale = store.push("items", rows((2, NOW - 3 * HOUR, None, 20)))  # older than the source's row
    assert stale.kept_newer == 1
    assert served(store, [1, 2]) == [100, 2]
    # Equal event time: a created time beats none, a later one beats an earlier one.
    store.push("items", rows((1, NOW - HOUR, NOW - HOUR, 101)))
    store.push("items", rows((1, NOW - HOUR, NOW - 2 * HOUR, 99)))
    assert served(store, [1]) == [101]
    store.push("items", rows((1, NOW - HOUR / 2, None, 102)))
    assert served(store, [1]) == [102]


def test_a_bad_batch_is_refused_whole_with_errors_per_row(
    store: FeatureStore, redis_client: redis.Redis
) -> None:
    before = sorted(item_keys(redis_client))
    table = pa.table(
        {
            "id": pa.array([10, 11, None, 13], pa.int64()),
            "ts": pa.array([NOW, NOW, NOW, None], TZ),
            "v": pa.array([1, -5, 3, 4], pa.int64()),
            "name": ["a", "b", "c", "d"],
        }
    )
    with pytest.raises(InvalidRowsError, match="3 of 4 row") as e:
        store.push("items", table)
    assert e.value.rows == [
        (1, "v", "greater_than_or_equal_to(0)"),
        (2, "id", "not_nullable"),
        (3, "ts", "not_nullable"),
    ]
    assert e.value.grpc_status == "INVALID_ARGUMENT"
    assert push_files(store, hidden=True) == []
    assert sorted(item_keys(redis_client)) == before
    assert served(store, [10, 11, 13]) == [None, None, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["name"]), "column 'name' (declared String) is missing"),
        (lambda t: t.append_column("extra", pa.array([1])), "column(s) 'extra' are not declared"),
        (lambda t: t.set_column(3, "v", pa.array(["7"])), "column 'v' is string, declared Int64"),
        (lambda t: t.set_column(3, "v", pa.array([1.5])), "column 'v' is double and does not cast to Int64"),
        (lambda t: t.set_column(0, "id", pa.array(["a"])), "column 'id' is string, declared Int64"),
    ],
)
def test_type_and_column_errors_name_the_column(store: FeatureStore, change: object, message: str) -> None:
    table = change(rows((1, NOW, None, 1)))  # type: ignore[operator]
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.push("items", table)
    assert push_files(store, hidden=True) == []


def test_safe_casts_and_pandas_frames_are_taken(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {
            "id": pd.array([4, 5], dtype="int32"),
            "ts": pd.to_datetime([NOW - HOUR, NOW - HOUR]).tz_localize(None),  # naive: UTC
            "v": [4.0, 5.0],  # whole floats cast to Int64
            "name": ["x", None],
        }
    )
    result = store.push("items", frame)  # no created column: its times are null
    assert result.written == 2
    assert served(store, [4, 5]) == [4, 5]
    written = pq.read_table(result.file)
    assert written.schema.field("created").type == TZ and written.column("created").null_count == 2
    assert written.schema.field("id").type == pa.int64()


def test_the_batch_size_is_bounded(store: FeatureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_module, "MAX_PUSH_ROWS", 3)
    with pytest.raises(InvalidRequestError, match="4 rows, more than the limit of 3"):
        store.push("items", rows(*[(i, NOW, None, i) for i in range(4)]))
    monkeypatch.setattr(push_module, "MAX_PUSH_BYTES", 10)
    with pytest.raises(InvalidRequestError, match="more than the limit of 10 per push"):
        store.push("items", rows((1, NOW, None, 1)))
    with pytest.raises(InvalidRequestError, match="no rows"):
        store.push("items", rows((1, NOW, None, 1)).slice(0, 0))
    assert push_files(store, hidden=True) == []


def test_expired_rows_are_durable_but_not_written_online(store: FeatureStore) -> None:
    result = store.push("items", rows((8, NOW - timedelta(days=40), None, 8), (9, NOW, None, 9)))
    assert (result.written, result.expired) == (1, 1)
    assert served(store, [8, 9]) == [None, 9]
    assert pq.read_table(result.file).num_rows == 2


def test_training_sets_see_pushed_rows_after_ingestion(store: FeatureStore) -> None:
    store.push("items", rows((1, NOW - HOUR, None, 100), (5, NOW - HOUR, None, 500)))
    assert as_of(store, [1, 5], NOW) == [1, None]  # not ingested yet
    (result,) = store.ingest()
    assert result.files_added == 1 and result.rows_inserted == 2
    assert as_of(store, [1, 5], NOW) == [100, 500]
    assert as_of(store, [1, 5], NOW - 90 * timedelta(minutes=1)) == [1, None]
    assert store.ingest()[0].changed is False  # the pushed file is known now


rows_pushed = st.lists(
    st.tuples(
        st.integers(0, 2),  # entity
        st.integers(0, 3),  # event time: hours ago
        st.one_of(st.none(), st.integers(0, 2)),  # created time: hours ago
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(rows_pushed, min_size=1, max_size=4))
def test_online_and_training_sets_agree_with_a_plain_reference(
    store: FeatureStore, batches: list[list[tuple[int, int, int | None, int]]]
) -> None:
    """Newest event time, then created time (none loses), then push order: online at once, and
    in training sets after ingestion. Each example uses entities of its own."""
    base = 1000 * next(_examples)
    newest: dict[int, tuple[tuple[datetime, datetime, int], int]] = {}
    order = itertools.count()
    for batch in batches:
        table = rows(
            *[
                (base + e, NOW - ago * HOUR, None if c is None else NOW - c * HOUR, v)
                for e, ago, c, v in batch
            ]
        )
        store.push("items", table)
        for e, ago, c, v in batch:
            rank = (
                NOW - ago * HOUR,
                datetime.min.replace(tzinfo=UTC) if c is None else NOW - c * HOUR,
                next(order),
            )
            if base + e not in newest or rank > newest[base + e][0]:
                newest[base + e] = (rank, v)
    ids = [base + e for e in range(3)]
    expected = [newest[i][1] if i in newest else None for i in ids]
    assert served(store, ids) == expected
    store.ingest()
    assert as_of(store, ids, NOW + HOUR) == expected


_examples = itertools.count(1)


def test_a_push_goes_on_while_a_run_holds_the_store(store: FeatureStore) -> None:
    path = store.config.duckdb_path
    with exclusive_run(path, "a materialization", False, None):
        with pytest.raises(RunInProgressError):  # the run lock is held
            with exclusive_run(path, "an ingestion", True, None):
                pass
        result = store.push("items", rows((1, NOW - HOUR, None, 100)))
    assert result.written == 1 and served(store, [1]) == [100]


def test_redis_down_the_rows_stay_durable_and_the_next_materialization_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        monkeypatch.setenv("FEATURESTORE_REDIS_URL", server.url)
        fs = make_store(
            tmp_path / "repo",
            DEFS,
            {"items/part-0.parquet": rows((1, NOW - 2 * HOUR, None, 1))},
            project="push",
        )
        fs.materialize()
        assert served(fs, [1]) == [1]
        server.stop()
        with pytest.raises(OnlineStoreUnavailable, match="durable offline .* not written online") as e:
            fs.push("items", rows((1, NOW - HOUR, None, 100)))
        assert e.value.grpc_status == "UNAVAILABLE"
        (file,) = push_files(fs, hidden=True)
        assert pq.read_table(file).column("v").to_pylist() == [100]
        server.start()  # empty again: nothing persisted
        fs.close()
        fs.materialize()
        assert served(fs, [1]) == [100]
    finally:
        fs.close()
        server.stop()


def test_an_offline_failure_writes_nothing_online(
    store: FeatureStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(item_keys(redis_client))

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(push_log.pq, "write_table", disk_full)
    with pytest.raises(PushLogUnavailable, match="nothing of the batch was written: No space left"):
        store.push("items", rows((9, NOW, None, 9)))
    assert push_files(store, hidden=True) == []  # the temporary file is removed too
    assert sorted(item_keys(redis_client)) == before


def test_a_view_with_only_pushed_files_is_ingested(store: FeatureStore) -> None:
    store.push("items", rows((6, NOW - HOUR, None, 60)))
    (store.config.repo / "data" / "items" / "part-0.parquet").unlink()
    (result,) = store.ingest()
    assert result.files_removed == 1 and result.files_added == 1
    assert as_of(store, [0, 6], NOW) == [None, 60]
    for file in push_files(store):
        file.unlink()
    with pytest.raises(Exception, match="matches no Parquet files and nothing was pushed") as e:
        store.ingest()
    assert isinstance(getattr(e.value, "errors", {}).get("items"), SourceError)


def test_pushes_are_in_lineage_and_training_sets_reproduce(store: FeatureStore, tmp_path: Path) -> None:
    result = store.push("items", rows((1, NOW - HOUR, None, 100)))
    store.ingest()
    graph = store.lineage("pushed")
    assert graph["root"] == "run:pushed"
    pushed = {e["to"] for e in graph["edges"] if e["from"] == "run:pushed"}
    assert f"file:{result.file}" in pushed and "view:items" in pushed
    assert store.lineage(f"materialize-{PUSHED_RUN_ID}")["root"] == "run:pushed"
    shown = run_cli("lineage", "pushed", "--repo", str(store.config.repo))
    assert shown.returncode == 0, shown.stderr
    assert f"run id {PUSHED_RUN_ID} came from a push" in shown.stdout and result.file.name in shown.stdout
    entities = pa.table({"id": pa.array([1], pa.int64()), "event_timestamp": pa.array([NOW], TZ)})
    with store.get_training_set(entities, ["items:v"]) as ts:
        ts.to_parquet(tmp_path / "ts.parquet")
        training_set = str(ts.manifest["id"])
    assert store.reproduce_training_set(training_set, tmp_path / "again.parquet").identical
    store.push("items", rows((1, NOW - HOUR / 2, None, 101)))
    with pytest.raises(SourceError, match="was added"):
        store.reproduce_training_set(training_set, tmp_path / "again2.parquet")


def test_the_spark_engine_is_refused_and_an_aggregation_view_takes_pushes(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    defs = (
        DEFS
        + """
from featurestore import Aggregation
sums = FeatureView("sums", entities=[item], source=items.source,
                   schema=[Field("v", Int64)],
                   aggregations=[Aggregation("v", "sum", window=timedelta(hours=1))])
"""
    )
    fs = make_store(tmp_path / "repo", defs, {"items/part-0.parquet": rows((1, NOW - HOUR / 2, None, 1))})
    spark = FeatureStore(fs.config.repo, replace(fs.config, offline_engine="spark"))
    with pytest.raises(InvalidRequestError, match="not supported on the Spark engine"):
        spark.push("sums", rows((1, NOW, None, 1)))
    assert not (fs.config.store_dir / "push").exists()
    fs.materialize()
    # tests/online/test_push_tiles.py covers aggregation views; here only that it is not refused
    assert fs.push("sums", rows((1, NOW - HOUR / 4, None, 5)).drop_columns(["name"])).written == 1
    assert fs.get_online_features(["sums:v_sum_1h"], {"id": [1]}).to_dict()["v_sum_1h"] == [6]
    # an event past the only window is in no value: counted as expired, nothing served changes
    batch = rows((1, NOW - 3 * HOUR, None, 50), (1, NOW - HOUR / 8, None, 1)).drop_columns(["name"])
    old = fs.push("sums", batch)
    assert (old.rows, old.written, old.expired) == (2, 1, 1)
    assert fs.get_online_features(["sums:v_sum_1h"], {"id": [1]}).to_dict()["v_sum_1h"] == [7]


def test_custom_checks_judge_every_push_the_quick_pass_never_skips_them(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    defs = DEFS.replace(
        "checks=[Check.ge(0)]", 'checks=[Check.ge(0), Check(lambda s: s % 2 == 0, name="even")]'
    )
    fs = make_store(
        tmp_path / "repo", defs, {"items/part-0.parquet": rows((0, NOW - 2 * HOUR, None, 0))}, project="push"
    )
    for _ in range(2):  # the second push finds the view's checks already read
        with pytest.raises(InvalidRowsError, match="even"):
            fs.push("items", rows((1, NOW - HOUR, None, 3)))
        assert fs.push("items", rows((1, NOW - HOUR, None, 4))).written in (0, 1)
    with pytest.raises(InvalidRowsError, match="greater_than_or_equal_to"):
        fs.push("items", rows((1, NOW - HOUR, None, -2)))
    assert served(fs, [1]) == [4]
    fs.close()


PUSH_ONLY = """
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
live = ParquetSource("live", path=None, timestamp_field="ts")  # rows only by push
live_items = FeatureView("live_items", entities=[item], source=live, ttl=timedelta(days=1),
                         schema=[Field("id", Int64), Field("v", Int64)])
live_counts = FeatureView("live_counts", entities=[item], source=live,
                          schema=[Field("id", Int64), Field("v", Int64)],
                          aggregations=[Aggregation("v", "count", window=timedelta(hours=1))])
"""


def test_a_source_without_a_path_takes_rows_only_by_push(tmp_path: Path, redis_client: redis.Redis) -> None:
    fs = make_store(tmp_path / "repo", PUSH_ONLY, project="live")  # no file anywhere: applies
    done = fs.materialize()  # nothing pushed yet: empty views, no failure
    assert {v.view: v.entities for v in done.views} == {"live_items": 0, "live_counts": 0}
    entities = pa.table({"id": pa.array([1, 2], pa.int64()), "event_timestamp": pa.array([NOW, NOW], TZ)})
    with fs.get_training_set(entities, ["live_items:v"]) as ts:
        assert ts.to_arrow().column("v").to_pylist() == [None, None]
    batch = pa.table({"id": pa.array([1], pa.int64()), "ts": pa.array([NOW - HOUR / 2], TZ), "v": [5]})
    assert fs.push("live_items", batch).written == 1
    assert fs.push("live_counts", batch).written == 1
    assert fs.get_online_features(["live_items:v", "live_counts:v_count_1h"], {"id": [1, 2]}).to_dict() == {
        "id": [1, 2],
        "v": [5, None],
        "v_count_1h": [1, 0],
    }
    fs.materialize()  # ingests the pushed files: training sets see them
    with fs.get_training_set(entities, ["live_items:v", "live_counts:v_count_1h"]) as ts:
        got = ts.to_arrow().sort_by("id")
    assert got.column("v").to_pylist() == [5, None] and got.column("v_count_1h").to_pylist() == [1, 0]


def test_a_push_only_view_declares_its_join_keys_and_a_path_must_still_match_files(tmp_path: Path) -> None:
    declared = 'schema=[Field("id", Int64), Field("v", Int64)])'
    undeclared = PUSH_ONLY.replace(declared, 'schema=[Field("v", Int64)])', 1)
    with pytest.raises(DefinitionError, match="join key 'id' must be declared in the schema"):
        make_store(tmp_path / "a", undeclared, project="live")
    with pytest.raises(DefinitionError, match="matches no Parquet files"):
        make_store(tmp_path / "b", PUSH_ONLY.replace("path=None", 'path="data/live"'), project="live")
