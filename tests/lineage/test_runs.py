"""Runs: each ingestion and materialization recorded with the source snapshots it read."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore import FeatureStore
from featurestore.errors import ViewsFailedError
from featurestore.fingerprints import file_fingerprint
from featurestore.storage import connection
from tests.lineage.support import at, write_stats


def sources_of(fs: FeatureStore, kind: str, run_id: object, columns: str = "*") -> list[dict[str, object]]:
    return rows(fs, f"SELECT {columns} FROM lin.run_sources WHERE kind = '{kind}' AND run_id = {run_id} "
                    "ORDER BY path")


def rows(fs: FeatureStore, sql: str) -> list[dict[str, object]]:
    with connection(fs.config.duckdb_path, read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_each_ingested_view_is_a_run_with_its_source_snapshot(store: FeatureStore) -> None:
    runs = rows(store, "SELECT * FROM lin.ingestion_runs ORDER BY view")
    assert [(r["view"], r["status"], r["registry_version"]) for r in runs] == [
        ("stats", "succeeded", 1), ("zones", "succeeded", 1)]
    stats = runs[0]
    assert (stats["files_added"], stats["rows_inserted"], stats["rows_quarantined"]) == (2, 6, 0)
    assert stats["started_at"] <= stats["finished_at"]
    assert '"passed": true' in str(stats["validation"])
    sources = sources_of(store, "ingest", stats["run_id"])
    a = store.config.repo / "data" / "stats" / "a.parquet"
    assert [Path(str(s["path"])).name for s in sources] == ["a.parquet", "b.parquet"]
    assert sources[0]["fingerprint"] == file_fingerprint(a)
    snapshot = (sources[0]["size"], sources[0]["mtime"], sources[0]["rows"])
    assert snapshot == (a.stat().st_size, a.stat().st_mtime, 4)
    assert (sources[0]["min_event_ts"], sources[0]["max_event_ts"]) == (at(0), at(3))


def test_a_failed_validation_is_a_failed_run_with_its_report(store: FeatureStore) -> None:
    write_stats(store.config.repo / "data" / "stats" / "b.parquet", [0.5, -1.0], drivers=(2,))
    with pytest.raises(ViewsFailedError):
        store.ingest(["stats"])
    [run] = [n for n in store.lineage("stats")["nodes"] if n["kind"] == "run" and n["status"] != "succeeded"]
    assert (run["status"], run["registry_version"]) == ("failed", 1)
    assert "score" in run["error"] and run["validation"]["invalid_rows"] == 1
    assert run["validation"]["failures"][0]["check"].startswith("greater_than_or_equal_to")


def test_an_unchanged_ingestion_is_still_a_run(store: FeatureStore) -> None:
    store.ingest(["zones"])
    run = rows(store, "SELECT * FROM lin.ingestion_runs ORDER BY run_id DESC LIMIT 1")[0]
    assert (run["view"], run["status"], run["rows_inserted"]) == ("zones", "succeeded", 0)


def test_a_materialization_run_records_the_snapshots_it_read(redis_url: str, store: FeatureStore) -> None:
    result = store.materialize()
    sources = sources_of(store, "materialize", result.run_id, "view, path")
    # Only online views are read: zones is offline.
    assert [(s["view"], Path(str(s["path"])).name) for s in sources] == [
        ("stats", "a.parquet"), ("stats", "b.parquet")]


def test_a_source_that_cannot_be_read_is_a_failed_run(store: FeatureStore) -> None:
    for f in (store.config.repo / "data" / "stats").iterdir():
        f.unlink()
    with pytest.raises(ViewsFailedError, match="matches no Parquet files"):
        store.ingest()
    failed = [n for n in store.lineage("stats")["nodes"] if n["kind"] == "run" and n["status"] == "failed"]
    assert len(failed) == 1 and "matches no Parquet files" in failed[0]["error"]
    assert failed[0]["validation"] is None


KILL_WHILE_WRITING = """
import os, signal, sys
from featurestore import FeatureStore

def progress(what, done, total):
    if "validating" not in what:  # the write phase: the run is recorded as running
        os.kill(os.getpid(), signal.SIGKILL)

FeatureStore(sys.argv[1]).ingest(progress=progress)
"""


def test_an_ingestion_killed_midway_is_recorded_interrupted_by_the_next(store: FeatureStore) -> None:
    import subprocess
    import sys

    write_stats(store.config.repo / "data" / "stats" / "c.parquet", [0.5, 0.6], drivers=(3, 4))
    killed = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_WRITING, str(store.config.repo)], capture_output=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr
    statuses = [r["status"] for r in rows(store, "SELECT status FROM lin.ingestion_runs ORDER BY run_id")]
    assert statuses[-1] == "running"  # a killed process cannot record its end
    store.ingest()
    runs = rows(store, "SELECT view, status, error FROM lin.ingestion_runs ORDER BY run_id")
    assert "running" not in [r["status"] for r in runs]
    interrupted = [r for r in runs if r["status"] == "interrupted"]
    assert interrupted and all("process ended" in str(r["error"]) for r in interrupted)
    assert runs[-1]["status"] == "succeeded"


def test_a_materialization_run_is_linked_to_the_ingestion_that_fed_it(redis_url: str, repo: Path) -> None:
    defs = repo / "defs.py"
    defs.write_text(defs.read_text().replace('ttl=None,', 'ttl=None, on_invalid="quarantine",'))
    fs = FeatureStore(repo)
    fs.apply()
    write_stats(repo / "data" / "stats" / "c.parquet", [0.7, -1.0, -2.0], drivers=(3,))  # 2 fail ge(0)
    result = fs.materialize()
    assert result.rows_rejected == 2
    run = rows(fs, f"SELECT * FROM lin.materialization_runs WHERE run_id = {result.run_id}")[0]
    ingested = rows(fs, "SELECT run_id, view, rows_quarantined FROM lin.ingestion_runs ORDER BY run_id")
    assert [r["view"] for r in ingested] == ["stats", "zones"]  # this call's, the fixture ingested nothing
    # zones is offline only: its ingestion ran too, but fed nothing in Redis.
    assert run["ingestion_runs"] == [ingested[0]["run_id"]]
    assert run["rows_rejected"] == ingested[0]["rows_quarantined"] == 2
    graph = fs.lineage(f"materialize-{result.run_id}")
    fed = {e["from"] for e in graph["edges"] if e["relation"] == "fed"}
    stats_run = next(r["run_id"] for r in ingested if r["view"] == "stats")
    assert f"run:ingest-{stats_run}" in fed
