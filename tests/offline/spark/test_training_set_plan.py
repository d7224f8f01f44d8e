"""The Spark training set's plan: each view's join evaluated once, and the rows put in input
order without the range sampling of a global sort (a job that evaluates every join again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.offline.spark import training_set
from tests.support.repos import copy_example_repo
from tests.support.spark import use_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SERVICE = "trip_model"  # driver_stats and customer_profile: two joins


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, spark: SparkSession
) -> Iterator[tuple[FeatureStore, FeatureStore]]:
    """The example repo on DuckDB and on Spark, each ingested by its own engine."""
    base = tmp_path_factory.mktemp("spark-plan")
    on_duckdb = FeatureStore(copy_example_repo(base / "repo", tiny_data))
    on_spark = FeatureStore(use_spark(copy_example_repo(base / "spark-repo", tiny_data)))
    for fs in (on_duckdb, on_spark):
        fs.apply()
        fs.ingest()
    yield on_duckdb, on_spark


def entities(store: FeatureStore) -> pa.Table:
    return pq.read_table(store.config.repo / "data" / "entity_rows.parquet")


def test_each_view_is_joined_once_and_nothing_samples_the_result(
    stores: tuple[FeatureStore, FeatureStore], capsys: pytest.CaptureFixture[str]
) -> None:
    _, on_spark = stores
    with on_spark.get_training_set(entities(on_spark), SERVICE) as ts:
        ts.dataframe.explain()
    plan = capsys.readouterr().out
    # One window per view: a second copy is a join evaluated twice (the shuffle is reused, the
    # window is not). A range partitioning (orderBy) samples its input in a job of its own.
    assert plan.count("Window [") == 2, plan
    assert "rangepartitioning" not in plan, plan
    assert plan.count("Exchange hashpartitioning") == 2 and "REPARTITION_BY_NUM" in plan, plan


def test_parts_of_a_known_row_count_are_consecutive_rows(
    stores: tuple[FeatureStore, FeatureStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_duckdb, on_spark = stores
    table = entities(on_spark)
    with on_duckdb.get_training_set(table, SERVICE) as ts:
        want = ts.to_arrow()
    # Small parts, adaptive execution left to coalesce as it does by default: the parts stay apart.
    monkeypatch.setattr(training_set, "ROWS_PER_PART", -(-table.num_rows // 3))
    with on_spark.get_training_set(table, SERVICE) as ts:
        folder = ts.to_parquet(tmp_path / "out")
    parts = sorted(folder.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_table(folder).cast(want.schema).equals(want)


def test_a_spark_frame_keeps_its_order_one_part_per_input_partition(
    stores: tuple[FeatureStore, FeatureStore], spark: SparkSession, tmp_path: Path
) -> None:
    on_duckdb, on_spark = stores
    table = entities(on_spark)
    files = tmp_path / "entities"
    files.mkdir()
    for i, start in enumerate(range(0, table.num_rows, 400)):  # one input partition each
        pq.write_table(table.slice(start, 400), files / f"{i}.parquet")
    frame = spark.read.parquet(str(files))
    partitions = frame.rdd.getNumPartitions()
    assert partitions > 1
    with on_duckdb.get_training_set(frame.toArrow(), SERVICE) as ts:  # the frame's order as given
        want = ts.to_arrow()
    with on_spark.get_training_set(frame, SERVICE) as ts:
        folder = ts.to_parquet(tmp_path / "out")
    assert len(list(folder.glob("part-*.parquet"))) == partitions
    assert pq.read_table(folder).cast(want.schema).equals(want)
