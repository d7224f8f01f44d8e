"""SIGKILL in the middle of an ingestion or an apply: the DuckDB file opens afterwards and
holds the state before or after, never a mix; a rerun ends where an uninterrupted run does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.storage import connect
from tests.reliability.support import (
    PROJECT,
    cli_env,
    finish,
    grown,
    hours_ago,
    ingested_files,
    ingested_rows,
    items_file,
    items_repo,
    kill_after,
    logged,
    opened,
    parquet_rows,
    query,
    start_cli,
    writing,
)

ROWS = 100_000  # per file: writing the changes takes a moment here


@pytest.fixture
def ingested(tmp_path: Path) -> FeatureStore:
    """Four files of items, applied and ingested: the state before."""
    repo = items_repo(tmp_path / "repo")
    newest = hours_ago(1)
    for i in range(4):
        items_file(repo / "data" / "items" / f"part-{i}.parquet", ROWS, 50_000, i * ROWS, newest, seed=i)
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    return fs


def test_an_ingestion_killed_anywhere_leaves_before_or_after_and_a_rerun_completes(
    ingested: FeatureStore,
) -> None:
    repo, db = ingested.config.repo, ingested.config.duckdb_path
    data = repo / "data" / "items"
    before = parquet_rows(sorted(data.glob("*.parquet")))
    assert ingested_rows(db).equals(before)
    # The change: a file rewritten, one removed, two added (300k rows to write).
    newest = hours_ago(0.5)
    items_file(data / "part-1.parquet", ROWS, 50_000, 10 * ROWS, newest, seed=11)
    (data / "part-2.parquet").unlink()
    for i in (4, 5):
        items_file(data / f"part-{i}.parquet", ROWS, 50_000, i * ROWS, newest, seed=i)
    after_files = sorted(data.glob("*.parquet"))
    after = parquet_rows(after_files)

    # An uninterrupted run of the same change on a copy of the file: the end state to reach.
    clean = repo.parent / "clean.duckdb"
    shutil.copy(db, clean)
    clean_env = cli_env(FEATURESTORE_DUCKDB_PATH=str(clean))
    code, _, err = finish(start_cli("materialize", "--offline", "--repo", str(repo), env=clean_env))
    assert code == 0, err
    assert ingested_rows(clean).equals(after)
    # Kill points, each the moment a state is seen (not a time): it opened the file (deciding,
    # validating: reads only); its runs are recorded (the log appears); the file grew
    # (uncommitted rows in its blocks); the log holds the big commit (not yet checkpointed).
    points = [
        lambda: opened(db),
        lambda: writing(db),
        lambda: grown(db, db.stat().st_size),  # the size now, after the last kill's replay
        lambda: logged(db, 64 * 1024),
    ]
    outcomes: list[int] = []
    left_running: set[int] = set()  # runs the killed processes left "running"
    for point in points:
        code = kill_after(start_cli("materialize", "--offline", "--repo", str(repo)), point(), 0)
        outcomes.append(code)
        left_running |= running_runs(db)
        # Opens for writing too (replaying DuckDB's log; the next kill point waits for a new one).
        connect(db).close()
        # Opens, and holds exactly one of the two states.
        now = ingested_rows(db)
        if code == -9 and now.equals(before):
            assert ingested_files(db) == [
                "part-0.parquet",
                "part-1.parquet",
                "part-2.parquet",
                "part-3.parquet",
            ]
            continue
        assert now.equals(after), f"killed at point {len(outcomes)}: neither before nor after"
        assert ingested_files(db) == [f.name for f in after_files]
        break
    # Kills landed before the commit, some of them while writing (their runs were recorded).
    assert outcomes[0] == -9 and left_running, (outcomes, left_running)

    code, _, err = finish(start_cli("materialize", "--offline", "--repo", str(repo)))
    assert code == 0, err
    assert ingested_rows(db).equals(after)
    assert ingested_files(db) == [f.name for f in after_files]
    runs = query(db, f"SELECT run_id, status, error FROM {PROJECT}.ingestion_runs ORDER BY run_id")
    # The runs the killed processes left "running" are recorded interrupted by the next one.
    assert {r[0] for r in runs if r[1] == "interrupted"} == left_running
    assert all("process ended" in str(r[2]) for r in runs if r[1] == "interrupted")
    assert runs[-1][1] == "succeeded" and {r[1] for r in runs} <= {"succeeded", "interrupted"}
    # The same as the uninterrupted run: rows (in their order of ingestion) and files.
    assert ingested_rows(db, order="__seq").equals(ingested_rows(clean, order="__seq"))
    files = f"SELECT view, file_id, path, size, fingerprint, rows FROM {PROJECT}.offline_files ORDER BY path"
    assert query(db, files) == query(clean, files)


MANY_VIEWS = 150


def many_views(extra_field: bool) -> str:
    """Definitions with many views, so recording a version takes a moment."""
    fields = '[Field("v", Int64), Field("x", Float64)' + (', Field("y", Float64)]' if extra_field else "]")
    return f"""
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
src = ParquetSource("items_src", path="data/items", timestamp_field="ts")
for i in range({MANY_VIEWS}):
    globals()[f"items_{{i}}"] = FeatureView(f"items_{{i}}", entities=[item], source=src,
                                            ttl=timedelta(days=30), schema={fields})
"""


def registry_rows(db: Path) -> list[tuple[object, ...]]:
    return query(
        db,
        f"SELECT version, kind, name, fingerprint, spec FROM {PROJECT}.registry_objects "
        "ORDER BY version, kind, name",
    )


def test_an_apply_killed_anywhere_leaves_before_or_after_and_a_rerun_completes(tmp_path: Path) -> None:
    repo = items_repo(tmp_path / "repo", many_views(extra_field=False))
    data = repo / "data" / "items" / "part-0.parquet"
    items_file(data, 10, 5, 0, hours_ago(1), seed=0)
    fs = FeatureStore(repo)
    fs.apply()
    db = fs.config.duckdb_path
    old_hash = fs.registry().content_hash
    # The new definitions need a column y in the source: add it, then compile independently.
    table = pq.read_table(data)
    pq.write_table(table.append_column("y", pc.multiply(table.column("x"), 2)), data)
    (repo / "defs.py").write_text(many_views(extra_field=True))
    new = fs.load_definitions()
    assert new.content_hash != old_hash
    objects = len([o for objs in new.by_kind().values() for o in objs])
    # An uninterrupted apply on a copy of the file: what it records. Kill points, each the
    # moment a state is seen: it opened the file (reading, planning); the file grew (rows
    # inserted, uncommitted); the log holds the commit (not yet checkpointed).
    clean = tmp_path / "clean.duckdb"
    shutil.copy(db, clean)
    env = cli_env(FEATURESTORE_DUCKDB_PATH=str(clean))
    code, _, err = finish(start_cli("apply", "--repo", str(repo), env=env))
    assert code == 0, err
    expected = registry_rows(clean)
    assert [r[0] for r in query(clean, f"SELECT version FROM {PROJECT}.registry_versions")] == [1, 2]

    outcomes = []
    for ready in (opened(db), grown(db, db.stat().st_size), writing(db)):
        code = kill_after(start_cli("apply", "--repo", str(repo)), ready, 0)
        outcomes.append(code)
        versions = query(
            db, f"SELECT version, content_hash FROM {PROJECT}.registry_versions ORDER BY version"
        )
        if versions == [(1, old_hash)]:
            assert code == -9
            assert {r[0] for r in registry_rows(db)} == {1}
            continue
        assert versions == [(1, old_hash), (2, new.content_hash)], versions
        assert len([r for r in registry_rows(db) if r[0] == 2]) == objects  # complete, not partial
        break
    assert outcomes[0] == -9, outcomes

    code, _, err = finish(start_cli("apply", "--repo", str(repo)))
    assert code == 0, err
    assert FeatureStore(repo).registry().content_hash == new.content_hash
    assert registry_rows(db) == expected  # every object of both versions, as the clean apply wrote


def running_runs(db: Path) -> set[int]:
    return {
        int(r[0]) for r in query(db, f"SELECT run_id FROM {PROJECT}.ingestion_runs WHERE status = 'running'")
    }
