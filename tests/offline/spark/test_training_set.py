"""Training sets on the Spark engine: the same as DuckDB's, from every form of entity frame."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from featurestore.offline.spark.training_set import SparkTrainingSet
from featurestore.offline.training_set import MANIFEST_KEY, TrainingSet
from tests.offline.spark.support import Ingested, rounded_columns, same_training_set

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Features of both views, both with a TTL (2 and 30 days); driver_stats has re-delivered
# rows that tie on event time and differ in created time.
FEATURES = [
    "driver_stats:conv_rate",
    "driver_stats:avg_daily_trips",
    "driver_stats:city",
    "driver_stats:is_active",
    "driver_stats:completed_trips_total",
    "customer_profile:current_balance",
    "customer_profile:lifetime_orders",
]
COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"


@dataclass(frozen=True)
class Engines:
    """The example repo twice, each copy ingested once by its own engine."""

    duckdb: FeatureStore
    spark: FeatureStore
    entities: Path  # the example's labelled events, a Parquet file
    out: Path


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory, example_on_duckdb: Ingested, example_on_spark: Ingested
) -> Engines:
    out = tmp_path_factory.mktemp("out")
    return Engines(example_on_duckdb.store, example_on_spark.store, example_on_duckdb.entities, out)


def both(
    engines: Engines, entity_df: object, features: list[str] | str = FEATURES, **kw: object
) -> tuple[pa.Table, pa.Table]:
    with engines.duckdb.get_training_set(entity_df, features, **kw) as ts:  # type: ignore[arg-type]
        assert isinstance(ts, TrainingSet)
        want = ts.to_arrow()
    with engines.spark.get_training_set(entity_df, features, **kw) as ts:  # type: ignore[arg-type]
        assert isinstance(ts, SparkTrainingSet)
        got = ts.to_arrow()
    return want, got


def test_the_same_training_set_as_duckdb(engines: Engines) -> None:
    entities = pq.read_table(engines.entities)
    want, got = both(engines, entities, full_feature_names=True)
    assert got.schema == want.schema
    assert got.equals(want)
    assert want.num_rows == entities.num_rows
    matched = sum(v is not None for v in want.column("driver_stats__conv_rate").to_pylist())
    assert 0 < matched < want.num_rows  # some rows match, some are past the TTL or too early


def test_the_example_aggregation_view_as_on_duckdb(engines: Engines) -> None:
    """dispatch_model: driver_stats and driver_trips, whose 9 aggregations cover counts, sums,
    means, max, stddev, last_n and count_distinct over 1 h to 30 d and lifetime windows."""
    entities = pq.read_table(engines.entities)
    want, got = both(engines, entities, "dispatch_model", full_feature_names=True)
    trips_view = engines.duckdb.get_feature_view("driver_trips")
    features = [f"driver_trips:{a.name}" for a in trips_view.aggregations]
    same_training_set(want, got, rounded_columns(engines.duckdb, features, full_names=True))
    trips = want.column("driver_trips__trips_24h").to_pylist()
    assert 0 < sum(1 for n in trips if n) < len(trips)  # some rows have trips that day, some not
    assert any(v and len(v) == 3 for v in want.column("driver_trips__payment_last3_1d").to_pylist())


def test_the_parquet_folder_reads_back_as_duckdbs_file_in_input_order(
    engines: Engines, spark: SparkSession
) -> None:
    entities = pq.read_table(engines.entities).to_pandas()
    with engines.duckdb.get_training_set(entities, FEATURES) as ts:
        file = ts.to_parquet(engines.out / "duckdb.parquet")
    # Spark would write these few rows as one file: kept in 4 parts, the order across files counts.
    spark.conf.set(COALESCE, "false")
    try:
        with engines.spark.get_training_set(entities, FEATURES) as ts:
            folder = ts.to_parquet(engines.out / "spark")
            manifest = ts.manifest
    finally:
        spark.conf.unset(COALESCE)
    assert folder.is_dir() and len(list(folder.glob("part-*.parquet"))) > 1
    assert pq.read_table(folder).equals(pq.read_table(file))
    written = json.loads(pq.read_schema(folder / "_common_metadata").metadata[MANIFEST_KEY.encode()])
    assert written["engine"] == "spark" and written["id"] == manifest["id"]
    assert sorted(written["warehouse"]) == ["customer_profile", "driver_stats"]
    recorded = engines.spark.training_sets()[-1]
    assert recorded["id"] == manifest["id"] and recorded["output"]["path"] == str(folder.resolve())
    assert set(recorded["statistics"]) == {f.split(":")[1] for f in FEATURES}


def test_a_recorded_spark_training_set_reproduces_byte_for_byte(engines: Engines) -> None:
    entities = pq.read_table(engines.entities).slice(0, 300).to_pandas()
    with engines.spark.get_training_set(entities, FEATURES, full_feature_names=True) as ts:
        ts.to_parquet(engines.out / "original")
        training_set = ts.manifest["id"]
    result = engines.spark.reproduce_training_set(training_set, engines.out / "again")
    assert result.identical, result
    assert pq.read_table(engines.out / "again").equals(pq.read_table(engines.out / "original"))


def test_to_batches_streams_the_same_rows(engines: Engines) -> None:
    entities = pq.read_table(engines.entities).slice(0, 200)
    with engines.duckdb.get_training_set(entities, FEATURES) as ts:
        want = ts.to_arrow()
    with engines.spark.get_training_set(entities, FEATURES) as ts:
        batches = list(ts.to_batches(batch_size=64))
    assert max(b.num_rows for b in batches) <= 64
    assert pa.Table.from_batches(batches).equals(want)


@pytest.mark.parametrize("form", ["spark dataframe", "spark table", "parquet path", "naive pandas"])
def test_entity_frames_in_every_form(engines: Engines, spark: SparkSession, form: str) -> None:
    table = pq.read_table(engines.entities).slice(0, 400)
    given: object
    if form == "parquet path":
        given = expected = engines.entities
    elif form == "naive pandas":  # naive times are UTC on both engines
        frame = table.to_pandas()
        frame["event_timestamp"] = frame["event_timestamp"].dt.tz_localize(None)
        given = expected = frame
    else:  # Spark's rows in their order as given; DuckDB gets the same rows as Arrow
        df = spark.createDataFrame(table)
        expected = table
        given = df
        if form == "spark table":
            df.createOrReplaceTempView("labelled_events")
            given = "labelled_events"
    want = both(engines, expected)[0]
    with engines.spark.get_training_set(given, FEATURES) as ts:
        got = ts.to_arrow()
        assert ts.manifest["entities"] == {
            "spark dataframe": "Spark DataFrame",
            "spark table": "Spark table labelled_events",
            "parquet path": str(engines.entities),
            "naive pandas": "pandas DataFrame",
        }[form]
    assert got.schema == want.schema
    assert got.equals(want)


def test_to_arrow_and_to_pandas_refuse_more_rows_than_max_rows(engines: Engines) -> None:
    entities = pq.read_table(engines.entities).slice(0, 5)
    with engines.spark.get_training_set(entities, FEATURES) as ts:
        for output in (ts.to_arrow, ts.to_pandas):
            with pytest.raises(InvalidRequestError, match=r"5 rows, more than max_rows=4.*to_parquet"):
                output(max_rows=4)
        assert ts.to_arrow(max_rows=5).num_rows == 5
        assert ts.to_pandas(max_rows=5).shape == (5, entities.num_columns + len(FEATURES))


def error_of(store: FeatureStore, entity_df: object) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        store.get_training_set(entity_df, FEATURES)
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.drop_columns(["customer_id"]), "no column 'customer_id', the join key of"),
        (lambda t: t.set_column(0, "driver_id", t["driver_id"].cast(pa.string())), "joins on it as Int64"),
        (lambda t: t.drop_columns(["event_timestamp"]), "no 'event_timestamp' column"),
        (lambda t: t.append_column("__fs_row", t["driver_id"]), "are reserved"),
    ],
    ids=["missing key", "string key", "no time", "reserved column"],
)
def test_a_bad_entity_frame_gets_duckdbs_error(engines: Engines, change: Any, match: str) -> None:
    table = change(pq.read_table(engines.entities).slice(0, 5))
    message = error_of(engines.spark, table)
    assert re.search(match, message)
    assert message == error_of(engines.duckdb, table)
