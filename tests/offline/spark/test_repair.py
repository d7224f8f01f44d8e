"""A lost warehouse folder (deleted by hand, a lost disk) is named by the training set that
needs it and rebuilt from the sources by the routine ingestion, to the rows DuckDB holds."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from featurestore import FeatureStore
from featurestore.errors import NotAppliedError
from tests.offline.spark.support import offline_rows, same_store
from tests.support.spark import use_spark
from tests.validation.support import GOOD, MIXED, PROJECT, trips_store


def test_a_lost_warehouse_folder_is_named_and_rebuilt_by_the_next_ingestion(
    tmp_path: Path, spark: SparkSession
) -> None:
    files = {"a.parquet": GOOD, "b.parquet": MIXED}
    duck = trips_store(tmp_path / "duck", "quarantine", files)
    sparky = trips_store(tmp_path / "spark", "quarantine", files, apply=False)
    sparky = FeatureStore(use_spark(sparky.config.repo))
    sparky.apply()
    duck.ingest()
    sparky.ingest()
    folders = sorted(Path(sparky.config.spark.warehouse).glob(f"{PROJECT}/trips/*/*"))
    assert len(folders) == 2
    shutil.rmtree(folders[1])
    entities = pd.DataFrame(
        {"driver_id": [1, 2, 5], "event_timestamp": [datetime(2030, 1, 1, tzinfo=UTC)] * 3}
    )
    with pytest.raises(NotAppliedError, match=f"{folders[1].name}.*materialize --offline. rebuilds"):
        sparky.get_training_set(entities, ["trips:rate", "trips:trips"])
    [trips] = [r for r in sparky.ingest() if r.view == "trips"]
    assert trips.rebuilt and trips.files_added == 2
    same_store(duck, sparky, ["trips", "profile"])
    assert [r.rebuilt for r in sparky.ingest()] == [False, False]  # repaired: nothing more to do
    want = duck.get_training_set(entities, ["trips:rate", "trips:trips"]).to_arrow()
    got = sparky.get_training_set(entities, ["trips:rate", "trips:trips"]).to_arrow()
    assert got.equals(want) and offline_rows(sparky, "trips").num_rows > 0
