"""Retention: `featurestore gc` deletes run bookkeeping that grew with every run, and keeps what
a recorded training set and the lineage of served values need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from featurestore import FeatureStore
from featurestore.lineage.retention import TABLES
from tests.lineage.support import entity_frame, write_stats
from tests.support.cli import run_cli

FEATURES = ["stats:score", "zones:label"]
FIRST_STATS_RUN = "SELECT min(run_id) FROM lin.ingestion_runs WHERE view = 'stats'"


def row_counts(fs: FeatureStore) -> dict[str, int]:
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*) FROM lin.{t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def served_runs(fs: FeatureStore) -> set[int]:
    result = fs.get_online_features(["stats:score"], {"driver_id": [1, 2, 3]}, with_run_ids=True)
    return {r for r in result.run_ids["stats"] if r is not None}


def test_gc_drops_old_runs_and_keeps_training_sets_and_served_lineage(
    redis_url: str, store: FeatureStore, tmp_path: Path
) -> None:
    fs = FeatureStore(store.config.repo)  # reads the Redis URL the fixture set
    fs.materialize()
    with fs.get_training_set(str(entity_frame(tmp_path / "entities.parquet")), FEATURES) as ts:
        ts.to_parquet(tmp_path / "train.parquet")
    [record] = fs.training_sets()
    write_stats(fs.config.repo / "data" / "stats" / "c.parquet", [0.9], drivers=(3,))
    fs.materialize()  # run 2 writes every value Redis will serve
    for _ in range(12):  # scheduled incremental runs that found nothing new still added rows
        fs.materialize_incremental()
    served = served_runs(fs)
    assert served == {2}  # older than the 5 most recent runs gc keeps anyway
    before = row_counts(fs)
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        # The ingestion that loaded the data the training set read: its record is worth keeping.
        [(loaded,)] = con.execute(FIRST_STATS_RUN).fetchall()
    names = [record["id"], *(f"materialize-{r}" for r in served)]
    lineage_before = {name: without_noop_counts(fs.lineage(name)) for name in names}
    # The loading run's own record and files stay; runs downstream of it that gc deletes go.
    loaded_before = upstream(fs.lineage(f"ingest-{loaded}"))

    result = fs.gc(keep_runs=5)

    after = row_counts(fs)
    assert after["run_sources"] < before["run_sources"] // 2, (before, after)
    assert after["ingestion_runs"] < before["ingestion_runs"] // 2, (before, after)
    assert after["materialization_runs"] < before["materialization_runs"] // 2, (before, after)
    assert result.rows_deleted == sum(before.values()) - sum(after.values())
    assert served <= set(result.kept_materialization_runs) and loaded in result.kept_ingestion_runs
    # What the lineage shows of the training set and of each run behind a served value is unchanged.
    assert {name: without_noop_counts(fs.lineage(name)) for name in lineage_before} == lineage_before
    assert upstream(fs.lineage(f"ingest-{loaded}")) == loaded_before
    assert fs.gc(keep_runs=5).rows_deleted == 0  # nothing more to delete
    # The training set still rebuilds byte for byte from its record, once the file added since is gone.
    (fs.config.repo / "data" / "stats" / "c.parquet").unlink()
    fs.ingest()
    reproduced = fs.reproduce_training_set(record["id"], tmp_path / "again.parquet")
    assert reproduced.identical


def test_gc_after_materialize_keeps_the_bookkeeping_bounded(redis_url: str, store: FeatureStore) -> None:
    toml = store.config.repo / "featurestore.toml"
    toml.write_text(toml.read_text() + "\n[retention]\nkeep_runs = 2\nafter_materialize = true\n")
    fs = FeatureStore(store.config.repo)
    fs.materialize()
    first = row_counts(fs)
    for _ in range(6):
        fs.materialize()
    last = row_counts(fs)
    assert last["materialization_runs"] <= 2 + len(served_runs(fs))
    assert last["run_sources"] <= first["run_sources"] + 2 * 5, (first, last)


def test_gc_command(redis_url: str, store: FeatureStore) -> None:
    for _ in range(3):
        assert run_cli("materialize", "--repo", str(store.config.repo)).returncode == 0
    done = run_cli("gc", "--repo", str(store.config.repo), "--keep-runs", "1")
    assert done.returncode == 0, done.stderr
    assert "run_sources" in done.stdout and "Kept" in done.stdout
    refused = run_cli("gc", "--repo", str(store.config.repo), "--keep-runs", "0")
    assert refused.returncode == 2 and "--keep-runs" in refused.stderr


def without_noop_counts(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph without the count of runs that changed nothing: gc deletes those runs by design."""
    for node in graph["nodes"]:
        node.pop("unchanged_runs", None)
    return graph


def upstream(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """The root run's node and the files it read."""
    return [n for n in graph["nodes"] if n["id"] == graph["root"] or n["kind"] == "file"]
