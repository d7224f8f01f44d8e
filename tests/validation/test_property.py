"""Property: for random small files with random invalid values, quarantine sets aside exactly the
rows that a plain-Python evaluation of the checks rejects, for those reasons, and ingests the rest."""

from __future__ import annotations

import itertools
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.offline.layout import view_table
from tests.support.repos import write_parquet
from tests.validation.support import GOOD, PROJECT, Row, expected_reasons, trips_store, trips_table


def maybe(values: st.SearchStrategy[Any], null_one_in: int) -> st.SearchStrategy[Any]:
    """``values``, or None about once in ``null_one_in`` draws."""
    return st.integers(0, null_one_in - 1).flatmap(lambda i: st.none() if i == 0 else values)


# Few keys and times, so duplicates of (key, event time, created time) are common.
ROWS = st.lists(
    st.tuples(
        maybe(st.integers(1, 3), 8),
        maybe(st.integers(0, 2), 8),
        maybe(st.integers(0, 1), 3),
        maybe(st.sampled_from([0.0, 1.0, -0.5, 1.5]) | st.floats(-1, 2, allow_nan=False), 3),
        maybe(st.sampled_from(["bike", "car", "van", ""]), 3),
        maybe(st.integers(-2, 5), 8),
    ),
    max_size=25,
)
FILE_NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """Applied once (the slow part); each example replaces the trips file with a new one."""
    fs = trips_store(tmp_path_factory.mktemp("property") / "repo", "quarantine",
                     {"part-00000.parquet": GOOD}, numbered=True)
    fs.ingest()
    return fs


@settings(max_examples=40, deadline=None)
@given(rows=ROWS)
def test_quarantine_is_exactly_the_rows_the_checks_reject(store: FeatureStore, rows: list[Row]) -> None:
    folder = store.config.repo / "data" / "trips"
    for old in folder.iterdir():
        old.unlink()
    path = write_parquet(folder / f"part-{next(FILE_NUMBERS):05d}.parquet", trips_table(rows, numbered=True))
    [result] = store.ingest(["trips"])
    bad = expected_reasons(rows)

    assert result.rows_quarantined == len(bad)
    assert result.rows_inserted + result.rows_quarantined == len(rows)
    assert result.validation is not None
    quarantined: dict[int, set[str]] = {}
    for where in result.validation.quarantined_to:
        for r in pq.read_table(where).to_pylist():
            assert r["__row"] == r["n"] and r["__source_file"] == str(path.resolve())
            quarantined[r["n"]] = set(r["__reason"].split("; "))
    assert quarantined == bad

    with duckdb.connect(str(store.config.duckdb_path), read_only=True) as con:
        ingested = con.execute(f"SELECT n FROM {view_table(PROJECT, 'trips')}").fetchall()
    assert sorted(n for (n,) in ingested) == sorted(set(range(len(rows))) - set(bad))
