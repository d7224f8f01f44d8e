"""The Spark engine over Spark Connect (``remote = "sc://..."``): no JVM in this process; the
server's tasks validate, write and join. The same rows and training set as the DuckDB engine."""

from __future__ import annotations

from pathlib import Path

from featurestore import FeatureStore
from tests.offline.spark.support import counts, same_store
from tests.support.repos import copy_example_repo
from tests.support.spark import use_spark
from tests.support.spark_connect import SparkConnectServer


def test_ingestion_and_training_sets_over_spark_connect(
    tmp_path: Path, tiny_data: Path, spark_connect: SparkConnectServer
) -> None:
    duck = FeatureStore(copy_example_repo(tmp_path / "duck", tiny_data))
    remote = FeatureStore(
        use_spark(copy_example_repo(tmp_path / "remote", tiny_data), remote=spark_connect.url)
    )
    for fs in (duck, remote):
        fs.apply()
    ingested = duck.ingest(), remote.ingest()
    assert counts(ingested[1]) == counts(ingested[0])
    same_store(duck, remote, [r.view for r in ingested[0]])
    entities = duck.config.repo / "data" / "entity_rows.parquet"
    with duck.get_training_set(entities, "trip_model") as ts:
        want = ts.to_arrow()
    with remote.get_training_set(entities, "trip_model") as ts:
        got = ts.to_arrow()
    assert want.num_rows > 0 and got.schema == want.schema and got.equals(want)
