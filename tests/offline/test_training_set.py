"""Training sets: each semantic on a hand-made example, every input form, outputs and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import DefinitionError, InvalidRequestError, NotAppliedError, NotFoundError
from featurestore.offline.training_set import MANIFEST_KEY
from tests.support.cli import run_cli
from tests.support.clock import minutes_after
from tests.support.repos import make_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

DEFS = '''
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
trip = Entity("trip", join_keys=["driver_id", "zone"])
stats = FeatureView(
    "stats", entities=[driver], ttl=timedelta(hours=1),
    source=ParquetSource("stats_src", path="data/stats.parquet", timestamp_field="ts",
                         created_timestamp_field="created"),
    schema=[Field("trips", Int64), Field("score", Float64)])
zones = FeatureView(
    "zones", entities=[trip],
    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
    schema=[Field("trips", Int64), Field("label", String)])
svc = FeatureService("svc", features=[stats[["score"]], zones[["label"]]])
'''


at = minutes_after(T0)


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    tz = pa.timestamp("us", tz="UTC")
    stats = pa.table({
        "driver_id": pa.array([1, 1, 1, 1, 2], pa.int64()),
        "ts": pa.array([at(0), at(10), at(10), at(30), at(0)], tz),
        "created": pa.array([at(0), at(11), at(12), at(30), at(0)], tz),
        "trips": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "score": [0.1, 0.2, 0.3, 0.4, 0.5],
    })
    zones = pa.table({
        "driver_id": pa.array([1, 1], pa.int64()),
        "zone": ["a", "b"],
        "ts": pa.array([at(0), at(0)], tz),
        "trips": pa.array([10, 20], pa.int64()),
        "label": ["in-a", "in-b"],
    })
    fs = make_store(tmp_path / "repo", DEFS, {"stats.parquet": stats, "zones.parquet": zones}, project="ts")
    fs.ingest()
    return fs


def entity_frame(rows: list[tuple[int, str, datetime]]) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [r[0] for r in rows], "zone": [r[1] for r in rows],
                         "event_timestamp": [r[2] for r in rows]})


def fetch(fs: FeatureStore, entities: object, features: list[str] | str, **kw: object) -> pa.Table:
    with fs.get_training_set(entities, features, **kw) as ts:  # type: ignore[arg-type]
        return ts.to_arrow()


def test_newest_row_not_after_entity_time_wins(store: FeatureStore) -> None:
    got = fetch(store, entity_frame([(1, "a", at(5)), (1, "a", at(30)), (1, "a", at(-1))]), ["stats:trips"])
    assert got.column("trips").to_pylist() == [1, 4, None]  # at(30) itself is a candidate


def test_equal_event_time_is_decided_by_created(store: FeatureStore) -> None:
    got = fetch(store, entity_frame([(1, "a", at(15))]), ["stats:trips"])
    assert got.column("trips").to_pylist() == [3]  # created 12 beats created 11


def test_ttl_bounds_are_inclusive(store: FeatureStore) -> None:
    # The row at(30) is exactly one hour old at at(90) and still served; a microsecond later it is not.
    late = at(90) + timedelta(microseconds=1)
    got = fetch(store, entity_frame([(1, "a", at(90)), (1, "a", late)]), ["stats:trips", "stats:score"])
    assert got.column("trips").to_pylist() == [4, None]
    assert got.column("score").to_pylist() == [0.4, None]
    assert got.schema.field("trips").type == pa.int64()


def test_rows_come_back_once_in_order_with_their_columns(store: FeatureStore) -> None:
    frame = entity_frame([(2, "a", at(5)), (1, "a", at(5)), (2, "a", at(5)), (9, "a", at(5))])
    frame["label"] = [True, False, True, False]
    got = fetch(store, frame, ["stats:trips"])
    assert got.column_names == ["driver_id", "zone", "event_timestamp", "label", "trips"]
    assert got.column("driver_id").to_pylist() == [2, 1, 2, 9]
    assert got.column("trips").to_pylist() == [5, 1, 5, None]


def test_composite_keys_and_two_entities_in_one_call(store: FeatureStore) -> None:
    got = fetch(store, entity_frame([(1, "b", at(5)), (1, "c", at(5))]), "svc")
    assert got.column("label").to_pylist() == ["in-b", None]
    assert got.column("score").to_pylist() == [0.1, 0.1]


def test_name_collision_needs_full_names(store: FeatureStore) -> None:
    with pytest.raises(InvalidRequestError, match="full_feature_names"):
        fetch(store, entity_frame([(1, "a", at(5))]), ["stats:trips", "zones:trips"])
    both = ["stats:trips", "zones:trips"]
    got = fetch(store, entity_frame([(1, "a", at(5))]), both, full_feature_names=True)
    assert got.column("stats__trips").to_pylist() == [1]
    assert got.column("zones__trips").to_pylist() == [10]


def test_naive_times_are_utc_and_zones_are_converted(store: FeatureStore) -> None:
    naive = pa.table({"driver_id": [1], "event_timestamp": pa.array([at(5).replace(tzinfo=None)],
                                                                    pa.timestamp("us"))})
    assert fetch(store, naive, ["stats:trips"]).column("trips").to_pylist() == [1]
    lisbon_summer = ZoneInfo("America/New_York")
    local = at(31).astimezone(lisbon_summer)  # the same instant in another zone
    frame = pd.DataFrame({"driver_id": [1], "event_timestamp": [pd.Timestamp(local)]})
    assert fetch(store, frame, ["stats:trips"]).column("trips").to_pylist() == [4]


def test_every_input_form_gives_the_same_result(store: FeatureStore, tmp_path: Path) -> None:
    frame = entity_frame([(1, "a", at(12)), (2, "a", at(1)), (1, "a", at(45))])
    expected = fetch(store, frame, ["stats:trips"]).column("trips").to_pylist()
    assert expected == [3, 5, 4]
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    path = tmp_path / "entities.parquet"
    pq.write_table(arrow, path)
    sql = ("SELECT * FROM (VALUES (1, 'a', TIMESTAMPTZ '2026-03-01 12:12:00+00'), "
           "(2, 'a', TIMESTAMPTZ '2026-03-01 12:01:00+00'), (1, 'a', TIMESTAMPTZ '2026-03-01 12:45:00+00'))"
           " t(driver_id, zone, event_timestamp)")
    for form in (arrow, path, str(path), sql):
        assert fetch(store, form, ["stats:trips"]).column("trips").to_pylist() == expected, type(form)


def test_batches_and_parquet_match_arrow(store: FeatureStore, tmp_path: Path) -> None:
    frame = entity_frame([(1 + i % 2, "a", at(i)) for i in range(50)])
    with store.get_training_set(frame, "svc") as ts:
        whole = ts.to_arrow()
        streamed = pa.Table.from_batches(list(ts.to_batches(batch_size=7)))
        out = ts.to_parquet(tmp_path / "out" / "train.parquet")
        manifest = ts.manifest
    assert streamed.equals(whole)
    sizes = [b.num_rows for b in ts_batches(store, frame)]
    assert len(sizes) > 1 and max(sizes) <= 7 and sum(sizes) == 50  # streamed in bounded batches
    written = pq.read_table(out)
    assert written.equals(whole)
    meta = pq.read_schema(out).metadata
    assert MANIFEST_KEY.encode() in meta
    assert manifest["features"] == ["stats:score", "zones:label"]
    assert manifest["sources"]["stats"][0]["rows"] == 5
    assert not list((tmp_path / "out").glob(".*partial"))


def ts_batches(fs: FeatureStore, frame: pd.DataFrame) -> list[pa.RecordBatch]:
    with fs.get_training_set(frame, "svc") as ts:
        return list(ts.to_batches(batch_size=7))


def test_columns_are_the_entity_columns_then_the_features_grouped_by_view(store: FeatureStore) -> None:
    refs = ["stats:score", "zones:label", "stats:trips"]  # views interleaved
    got = fetch(store, entity_frame([(1, "a", at(5))]), refs, full_feature_names=True)
    assert got.column_names == ["driver_id", "zone", "event_timestamp", "stats__score", "stats__trips",
                                "zones__label"]


def test_a_feature_named_like_an_entity_column_needs_full_names(store: FeatureStore) -> None:
    frame = entity_frame([(1, "a", at(5))])
    frame["trips"] = [99]  # e.g. a label column
    with pytest.raises(InvalidRequestError, match="'trips', which the entity frame already has"):
        fetch(store, frame, ["stats:trips"])
    got = fetch(store, frame, ["stats:trips"], full_feature_names=True)
    assert got.column("trips").to_pylist() == [99] and got.column("stats__trips").to_pylist() == [1]


def test_a_view_never_ingested_is_a_clear_error(tmp_path: Path) -> None:
    tz = pa.timestamp("us", tz="UTC")
    stats = pa.table({"driver_id": pa.array([1], pa.int64()), "ts": pa.array([at(0)], tz),
                      "created": pa.array([at(0)], tz), "trips": pa.array([1], pa.int64()),
                      "score": [0.1]})
    zones = pa.table({"driver_id": pa.array([1], pa.int64()), "zone": ["a"],
                      "ts": pa.array([at(0)], tz), "trips": pa.array([10], pa.int64()),
                      "label": ["in-a"]})
    fs = make_store(tmp_path / "repo", DEFS, {"stats.parquet": stats, "zones.parquet": zones}, project="ni")
    frame = entity_frame([(1, "a", at(5))])
    with pytest.raises(NotAppliedError, match="'stats' has not been ingested"):
        fs.get_training_set(frame, ["stats:trips"])
    fs.ingest(["stats"])
    assert fetch(fs, frame, ["stats:trips"]).column("trips").to_pylist() == [1]
    with pytest.raises(NotAppliedError, match="'zones' has not been ingested.*materialize --offline"):
        fs.get_training_set(frame, "svc")


@pytest.mark.parametrize(
    ("frame", "error", "match"),
    [
        (pd.DataFrame({"event_timestamp": [T0]}), InvalidRequestError, "no column 'driver_id'"),
        (pd.DataFrame({"driver_id": [1]}), InvalidRequestError, "no 'event_timestamp' column"),
        (pd.DataFrame({"driver_id": [1], "event_timestamp": ["2026-03-01"]}), InvalidRequestError,
         "must be a timestamp"),
        (pd.DataFrame({"driver_id": ["1"], "event_timestamp": [T0]}), InvalidRequestError,
         "joins on it as Int64"),
    ],
)
def test_bad_entity_frames(store: FeatureStore, frame: pd.DataFrame, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        store.get_training_set(frame, ["stats:trips"])


def test_unknown_names(store: FeatureStore) -> None:
    frame = entity_frame([(1, "a", at(5))])
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        store.get_training_set(frame, ["stats:nope"])
    with pytest.raises(NotFoundError, match="unknown feature view 'ghost'"):
        store.get_training_set(frame, ["ghost:x"])
    with pytest.raises(NotFoundError, match="no feature service named 'ghost'"):
        store.get_training_set(frame, "ghost")


def test_view_not_ingested_is_a_clear_error(tmp_path: Path, store: FeatureStore) -> None:
    fresh = FeatureStore(store.config.repo)
    extra_field = DEFS.replace('Field("score", Float64)', 'Field("score", Float64), Field("trips2", Int64)')
    (store.config.repo / "defs.py").write_text(extra_field)
    with pytest.raises(DefinitionError, match="trips2"):  # not in the source: refused at apply
        fresh.apply()
    longer_ttl = DEFS.replace("ttl=timedelta(hours=1)", "ttl=timedelta(hours=2)")
    (store.config.repo / "defs.py").write_text(longer_ttl)
    fresh.apply()
    with pytest.raises(NotAppliedError, match="changed since it was ingested"):
        fresh.get_training_set(entity_frame([(1, "a", at(5))]), ["stats:trips"])
    fresh.ingest(["stats"])
    assert fetch(fresh, entity_frame([(1, "a", at(5))]), ["stats:trips"]).column("trips").to_pylist() == [1]


def test_reingest_is_incremental(store: FeatureStore) -> None:
    assert not any(r.changed for r in store.ingest())
    path = store.config.repo / "data" / "stats.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 4), path)  # drop driver 2's row
    results = {r.view: r for r in store.ingest()}
    assert results["stats"].files_changed == 1 and results["stats"].rows_deleted == 5
    assert results["stats"].rows_inserted == 4 and not results["zones"].changed
    got = fetch(store, entity_frame([(2, "a", at(5))]), ["stats:trips"])
    assert got.column("trips").to_pylist() == [None]


def test_cli_training_set(store: FeatureStore, tmp_path: Path) -> None:
    entities = tmp_path / "entities.parquet"
    pq.write_table(pa.Table.from_pandas(entity_frame([(1, "a", at(5))]), preserve_index=False), entities)
    out = tmp_path / "train.parquet"
    repo = str(store.config.repo)
    done = run_cli("training-set", "--repo", repo, "--entities", str(entities), "--service", "svc",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).column("score").to_pylist() == [0.1]
    bad = run_cli("training-set", "--repo", repo, "--entities", str(entities), "--features", "stats:nope",
                  "--out", str(tmp_path / "x.parquet"))
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "no feature 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.parquet").exists()
    # Bad entity rows: one line naming the problem; an existing output is left as it was.
    keyless = tmp_path / "keyless.parquet"
    pq.write_table(pa.table({"event_timestamp": pa.array([at(5)], pa.timestamp("us", tz="UTC"))}), keyless)
    before = out.read_bytes()
    bad = run_cli("training-set", "--repo", repo, "--entities", str(keyless), "--features", "stats:trips",
                  "--out", str(out))
    assert bad.returncode == 1 and "no column 'driver_id'" in bad.stderr
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "entities.parquet", "keyless.parquet", "repo", "train.parquet"]
