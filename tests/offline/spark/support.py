"""Comparing what two stores ingested, one per engine, and the example repo ingested by each."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featurestore import FeatureStore
from featurestore.definitions.types import FLOATS
from featurestore.offline.write import IngestResult
from featurestore.validation import FileReport
from tests.support.repos import copy_example_repo
from tests.support.spark import use_spark
from tests.validation.support import PROJECT


@dataclass(frozen=True)
class Ingested:
    """A repo applied and ingested once, shared by tests that only read it (training sets add
    their records; nothing re-ingests or changes the files)."""

    store: FeatureStore
    results: list[IngestResult]  # what the one ingestion returned

    @property
    def entities(self) -> Path:
        """The example's labelled events, a Parquet file."""
        return self.store.config.repo / "data" / "entity_rows.parquet"


@contextmanager
def ingested_example(folder: Path, data: Path, on_spark: bool = False) -> Iterator[Ingested]:
    """The example repo with ``data`` in ``folder``/repo, applied and ingested by its engine."""
    repo = copy_example_repo(folder / "repo", data)
    store = FeatureStore(use_spark(repo) if on_spark else repo)
    assert store.config.offline_engine == ("spark" if on_spark else "duckdb")
    store.apply()
    try:
        yield Ingested(store, store.ingest())
    finally:
        store.close()


def offline_rows(fs: FeatureStore, view: str) -> pa.Table:
    """The view's ingested rows as the store holds them (DuckDB table, or view over the warehouse)."""
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        sql = f'SELECT * FROM "{fs.config.project}"."offline_{view}" ORDER BY __seq'
        return con.sql(sql).to_arrow_table()


def file_records(fs: FeatureStore, moved: tuple[str, str] | None = None) -> list[tuple[Any, ...]]:
    """``offline_files`` without the times of the run, paths relative to the repo. ``moved``
    is (URI, repo folder) of files the repo reads from a URI: their paths are given as under the
    folder, and their fingerprints (of URI, size and mtime, or of contents) as None on either side."""
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        rows = con.execute(
            f"SELECT view, file_id, path, size, fingerprint, rows, min_event_ts, max_event_ts "
            f'FROM "{fs.config.project}".offline_files ORDER BY view, path'
        ).fetchall()
    repo, records = str(fs.config.repo), []
    for view, file_id, path, size, fingerprint, *rest in rows:
        if moved is not None and path.startswith(moved[0] + "/"):
            path = moved[1] + path.removeprefix(moved[0])
        else:
            path = str(Path(path).relative_to(repo))
        if moved is not None and path.startswith(moved[1] + "/"):
            fingerprint = None
        records.append((view, file_id, path, size, fingerprint, *rest))
    return sorted(records)


def counts(results: Sequence[IngestResult]) -> list[tuple[Any, ...]]:
    return [
        (
            r.view,
            r.files_added,
            r.files_changed,
            r.files_removed,
            r.rows_inserted,
            r.rows_deleted,
            r.rows_skipped,
            r.rows_quarantined,
            r.rebuilt,
        )
        for r in sorted(results, key=lambda r: r.view)
    ]


def reports(results: Sequence[IngestResult]) -> list[Any]:
    """The validation reports, files by name (the repos differ)."""
    return [
        file_reports(r.validation.files) if r.validation else None
        for r in sorted(results, key=lambda r: r.view)
    ]


def file_reports(files: Sequence[FileReport]) -> list[tuple[Any, ...]]:
    return [
        (
            Path(f.path).name,
            f.rows,
            f.invalid_rows,
            f.error,
            [(c.column, c.check, c.failing_rows, c.examples) for c in f.failures],
        )
        for f in files
    ]


def retracted(fs: FeatureStore) -> list[tuple[Any, ...]]:
    """The keys waiting for Redis to be corrected, and how often each was retracted."""
    with duckdb.connect(str(fs.config.duckdb_path), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'retracted_trips'"
        ).fetchall()
        if not found[0][0]:
            return []
        return con.execute(
            f"SELECT driver_id, count(*) FROM {PROJECT}.retracted_trips GROUP BY ALL ORDER BY 1"
        ).fetchall()


def same_store(
    a: FeatureStore, b: FeatureStore, views: Sequence[str], moved: tuple[str, str] | None = None
) -> None:
    """The same rows and file records; ``moved``: see file_records."""
    for view in views:
        rows_a, rows_b = offline_rows(a, view), offline_rows(b, view)
        assert rows_b.schema == rows_a.schema, view
        assert rows_b.equals(rows_a), view
    assert file_records(b, moved) == file_records(a, moved)


# Aggregations whose floats Spark sums in another order than DuckDB, equal within rounding:
# sums and means of floats (integers sum exactly), variances and deviations of any column
# (each engine updates its moments its own way).
SPREADS = frozenset({"variance", "stddev"})


def rounded_columns(fs: FeatureStore, features: Sequence[str], full_names: bool = False) -> set[str]:
    """The training-set columns of ``features`` (``view:feature``) compared within rounding."""
    out = set()
    for ref in features:
        name, feature = ref.split(":")
        view = fs.get_feature_view(name)
        columns = {f.name: f for f in view.columns}
        for a in view.aggregations:
            floats = a.function in ("sum", "mean") and columns[a.column].dtype.name in FLOATS
            if a.name == feature and (floats or a.function in SPREADS):
                out.add(f"{name}__{feature}" if full_names else feature)
    return out


def same_training_set(want: pa.Table, got: pa.Table, rounded: Set[str] = frozenset()) -> None:
    """Equal as Arrow tables (schema, values, row order); the ``rounded`` columns' floats within
    1e-9 relative (the engines sum in different orders), their nulls exactly."""
    assert got.schema == want.schema
    exact = [c for c in want.column_names if c not in rounded]
    differ = [c for c in exact if not got.column(c).equals(want.column(c))]
    assert not differ, [(c, want.column(c).to_pylist(), got.column(c).to_pylist()) for c in differ[:3]]
    for name in rounded:
        a, b = want.column(name).to_pylist(), got.column(name).to_pylist()
        assert [x is None for x in b] == [x is None for x in a], name
        bad = [
            (i, x, y)
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            if x is not None and not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        ]
        assert not bad, (name, bad[:5])
