"""Incremental ingestion: unchanged files do nothing; new, changed and removed files are picked up,
and the training set afterwards is the one a full ingestion of today's files gives (the reference)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from tests.offline.reference import SourceRow, point_in_time
from tests.support.cli import run_cli
from tests.support.clock import minutes_after
from tests.support.repos import make_store, write_parquet

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEFS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
trips = FeatureView("trips", entities=[driver], schema=[Field("trips", Int64)],
                    source=ParquetSource("trips_src", path="data/trips", timestamp_field="ts",
                                         created_timestamp_field="created"))
"""
Row = tuple[int, int, int | None, int]  # driver, event minute, created minute, trips

# Every driver at every ten minutes (and between): the grid the training sets are checked on.
GRID = [(d, m) for d in (1, 2, 3) for m in range(-5, 50, 5)]


at = minutes_after(T0)


def trips_table(rows: list[Row]) -> pa.Table:
    tz = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "driver_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([at(r[1]) for r in rows], tz),
            "created": pa.array([None if r[2] is None else at(r[2]) for r in rows], tz),
            "trips": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def write(repo: Path, name: str, rows: list[Row]) -> None:
    write_parquet(repo / "data" / "trips" / name, trips_table(rows))


def trips_store(repo: Path, files: dict[str, list[Row]]) -> FeatureStore:
    """The trips view over ``files`` (name -> rows under data/trips), applied."""
    tables = {f"trips/{name}": trips_table(rows) for name, rows in files.items()}
    return make_store(repo, DEFS, tables, project="inc")


def served(store: FeatureStore) -> list[int | None]:
    entities = pa.table(
        {
            "driver_id": pa.array([d for d, _ in GRID], pa.int64()),
            "event_timestamp": pa.array([at(m) for _, m in GRID], pa.timestamp("us", tz="UTC")),
        }
    )
    with store.get_training_set(entities, ["trips:trips"]) as ts:
        return ts.to_arrow().column("trips").to_pylist()


def expected(files: dict[str, list[Row]]) -> list[int | None]:
    """The reference over today's files: a full tie goes to the later file in path order."""
    rows = [
        SourceRow((r[0],), at(r[1]), None if r[2] is None else at(r[2]), (i, j), {"trips": r[3]})
        for i, name in enumerate(sorted(files))
        for j, r in enumerate(files[name])
    ]
    got = point_in_time([(d,) for d, _ in GRID], [at(m) for _, m in GRID], rows, ["trips"], None)
    return [row["trips"] for row in got]


def test_unchanged_new_changed_and_removed_files(tmp_path: Path) -> None:
    files: dict[str, list[Row]] = {"a.parquet": [(1, 0, 0, 1), (2, 0, 0, 2)]}
    store = trips_store(tmp_path / "repo", files)
    [first] = store.ingest()
    assert (first.files_added, first.rows_inserted) == (1, 2)

    [again] = store.ingest()  # nothing changed: nothing done
    assert not again.changed and (again.rows_inserted, again.rows_deleted) == (0, 0)
    (store.config.repo / "data" / "trips" / "a.parquet").touch()  # touched, same content: still nothing
    assert not store.ingest()[0].changed

    files["b.parquet"] = [(1, 10, 10, 11)]  # a new file, after the others in path order
    write(store.config.repo, "b.parquet", files["b.parquet"])
    [added] = store.ingest()
    assert (added.files_added, added.files_changed, added.rows_inserted, added.rows_deleted) == (1, 0, 1, 0)
    assert not added.rebuilt
    assert served(store) == expected(files)

    files["a.parquet"] = [(1, 0, 0, 1), (2, 0, 0, 2), (3, 20, 20, 3)]  # changed: its rows replaced
    write(store.config.repo, "a.parquet", files["a.parquet"])
    [changed] = store.ingest()
    assert (changed.files_added, changed.files_changed, changed.rows_inserted, changed.rows_deleted) == (
        0,
        1,
        3,
        2,
    )
    assert served(store) == expected(files)

    del files["b.parquet"]  # removed: its rows go
    (store.config.repo / "data" / "trips" / "b.parquet").unlink()
    [removed] = store.ingest()
    assert (removed.files_removed, removed.rows_deleted, removed.rows_inserted) == (1, 1, 0)
    assert served(store) == expected(files)


def test_cli_materialize_offline_reports_what_changed(tmp_path: Path) -> None:
    store = trips_store(tmp_path / "repo", {"a.parquet": [(1, 0, 0, 1)]})
    repo = str(store.config.repo)
    first = run_cli("materialize", "--offline", "--repo", repo)
    assert first.returncode == 0, first.stderr
    assert "1 of 1 views changed" in first.stdout
    again = run_cli("materialize", "--offline", "--repo", repo)
    assert again.returncode == 0 and "0 of 1 views changed" in again.stdout
    write(store.config.repo, "b.parquet", [(1, 10, 10, 2)])
    assert "1 of 1 views changed" in run_cli("materialize", "--offline", "--repo", repo).stdout
    assert served(store)[GRID.index((1, 10))] == 2


minutes = st.integers(0, 4).map(lambda m: m * 10)
source_row = st.tuples(st.integers(1, 3), minutes, st.one_of(st.none(), minutes), st.integers(0, 99))
# One step: write (add or rewrite) file k with these rows, or delete it (None).
step = st.tuples(st.integers(0, 3), st.one_of(st.none(), st.lists(source_row, min_size=1, max_size=6)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(source_row, min_size=1, max_size=6), steps=st.lists(step, min_size=1, max_size=4))
def test_incremental_ingestion_matches_a_full_one(
    tmp_path_factory: pytest.TempPathFactory, first: list[Row], steps: list[tuple[int, list[Row] | None]]
) -> None:
    # Coarse times and few drivers make full ties (same driver, event and created time) across
    # files common: whichever files change, the later file in path order must keep winning.
    files: dict[str, list[Row]] = {"part-1.parquet": first}
    store = trips_store(tmp_path_factory.mktemp("inc") / "repo", files)
    store.ingest()
    assert served(store) == expected(files)
    for k, rows in steps:
        name = f"part-{k}.parquet"
        if rows is None:
            if name not in files or len(files) == 1:
                continue  # a view keeps at least one file
            del files[name]
            (store.config.repo / "data" / "trips" / name).unlink()
        else:
            files[name] = rows
            write(store.config.repo, name, rows)
        store.ingest()
        assert served(store) == expected(files), (k, rows)
