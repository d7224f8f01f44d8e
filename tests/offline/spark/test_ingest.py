"""Ingestion on the Spark engine gives what the DuckDB engine gives: the same rows (values,
Arrow types, order), the same file records and statistics, the same validation reports and
quarantined rows; and changes to the files are followed the same way, append-only."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurestore import FeatureStore
from featurestore.errors import ViewsFailedError
from tests.offline.spark.support import (
    Ingested,
    counts,
    file_records,
    file_reports,
    offline_rows,
    reports,
    retracted,
    same_store,
)
from tests.support.repos import write_parquet
from tests.support.spark import use_spark
from tests.validation.support import GOOD, MIXED, PROJECT, expected_reasons, trips_store, trips_table


def test_the_example_repo_ingests_the_same_on_both_engines(
    example_on_duckdb: Ingested, example_on_spark: Ingested
) -> None:
    duck, sparky = example_on_duckdb.store, example_on_spark.store
    ingested = example_on_duckdb.results, example_on_spark.results
    assert counts(ingested[1]) == counts(ingested[0])
    assert [r.statistics for r in ingested[1]] == [r.statistics for r in ingested[0]]
    views = [r.view for r in ingested[0]]
    assert views and all(offline_rows(duck, v).num_rows > 0 for v in views)
    same_store(duck, sparky, views)
    # The rows live in the warehouse, one folder per source file; DuckDB only points at them.
    folders = sorted(Path(sparky.config.spark.warehouse).glob(f"{sparky.config.project}/*/*/*"))
    assert len(folders) == len(file_records(sparky)) and all(list(f.glob("*.parquet")) for f in folders)


@pytest.mark.parametrize("policy", ["quarantine", "fail"])
def test_invalid_rows_get_the_same_verdict_on_both_engines(
    tmp_path: Path, spark: SparkSession, policy: str
) -> None:
    files = {"a.parquet": GOOD, "b.parquet": MIXED}
    duck = trips_store(tmp_path / "duck", policy, files)
    sparky = trips_store(tmp_path / "spark", policy, files, apply=False)
    use_spark(sparky.config.repo)
    sparky = FeatureStore(sparky.config.repo)
    sparky.apply()
    if policy == "fail":
        errors = []
        for fs in (duck, sparky):
            with pytest.raises(ViewsFailedError) as raised:
                fs.ingest()
            errors.append(raised.value)
        assert list(errors[1].errors) == list(errors[0].errors) == ["trips"]
        verdicts = [file_reports(e.errors["trips"].report.files) for e in errors]  # type: ignore[attr-defined]
        assert verdicts[1] == verdicts[0] and verdicts[0][1][2] == len(expected_reasons(MIXED))
        assert not (Path(sparky.config.spark.warehouse) / PROJECT / "trips").exists()  # nothing written
        return
    results = duck.ingest(), sparky.ingest()
    assert counts(results[1]) == counts(results[0])
    assert reports(results[1]) == reports(results[0])
    # The quarantined rows are the rows the plain-Python checks reject, with the same reasons.
    bad = expected_reasons(MIXED)
    quarantined = []
    for result in results:
        [trips] = [r for r in result if r.view == "trips"]
        [path] = trips.validation.quarantined_to  # type: ignore[union-attr]
        table = pq.read_table(path).drop_columns(["__source_file"])
        assert table.column("__row").to_pylist() == sorted(bad)
        reasons = [set(r.split("; ")) for r in table.column("__reason").to_pylist()]
        assert reasons == [bad[i] for i in sorted(bad)]
        quarantined.append(table)
    assert quarantined[1].equals(quarantined[0])
    same_store(duck, sparky, ["trips", "profile"])


def test_changed_added_and_removed_files_are_followed_the_same_way(
    tmp_path: Path, spark: SparkSession
) -> None:
    stores = []
    for name in ("duck", "spark"):
        fs = trips_store(tmp_path / name, "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED}, apply=False)
        if name == "spark":
            use_spark(fs.config.repo)
            fs = FeatureStore(fs.config.repo)
        fs.apply()
        fs.ingest()
        stores.append(fs)
    steps = [
        lambda data: write_parquet(data / "c.parquet", trips_table(GOOD[:2])),  # added, sorts last
        lambda data: write_parquet(data / "a.parquet", trips_table(GOOD[1:] + MIXED[:1])),  # changed
        lambda data: (data / "b.parquet").unlink(),  # removed
        lambda data: write_parquet(data / "0.parquet", trips_table(MIXED[3:5])),  # sorts first: rebuild
    ]
    seen_retractions = 0
    for step in steps:
        results = []
        for fs in stores:
            step(fs.config.repo / "data" / "trips")
            results.append(fs.ingest(["trips"]))
        assert counts(results[1]) == counts(results[0])
        same_store(stores[0], stores[1], ["trips"])
        assert retracted(stores[1]) == retracted(stores[0])
        seen_retractions += len(retracted(stores[0]))
    assert seen_retractions  # the steps did take rows away
    # Append-only: every version of every file is still in the warehouse (a training set's
    # manifest names them); only the live ones are recorded.
    folders = list((Path(stores[1].config.spark.warehouse) / PROJECT / "trips").glob("*/*"))
    assert len(folders) > len(file_records(stores[1]))
    # gc deletes the folders nothing reads any more (no training set was recorded here).
    before = offline_rows(stores[1], "trips")
    live = [r for r in file_records(stores[1]) if r[0] == "trips"]
    assert stores[1].gc().warehouse_folders_deleted == len(folders) - len(live)
    left = list((Path(stores[1].config.spark.warehouse) / PROJECT / "trips").glob("*/*"))
    assert len(left) == len(live) and offline_rows(stores[1], "trips").equals(before)


def test_switching_engines_rebuilds_the_view(tmp_path: Path, spark: SparkSession) -> None:
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    fs.ingest()
    before = offline_rows(fs, "trips")
    toml = fs.config.repo / "featurestore.toml"
    plain = toml.read_text()
    use_spark(fs.config.repo)
    on_spark = FeatureStore(fs.config.repo)
    [trips] = on_spark.ingest(["trips"])
    assert trips.rebuilt and trips.rows_inserted == before.num_rows
    assert offline_rows(on_spark, "trips").equals(before)
    assert not on_spark.ingest(["trips"])[0].changed  # and then up to date
    toml.write_text(plain)
    back = FeatureStore(fs.config.repo)
    [trips] = back.ingest(["trips"])
    assert trips.rebuilt and offline_rows(back, "trips").equals(before)
