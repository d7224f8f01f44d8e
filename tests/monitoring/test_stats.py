"""Statistics of each ingestion run and training set, checked against pandas on the same rows."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestore.offline.training_set import MANIFEST_KEY
from featurestore.profiling import OTHER, QUANTILE_LEVELS, TOP_K, FeatureStats, compute_statistics
from featurestore.runs.statistics import StatisticsState
from featurestore.storage import connection
from tests.monitoring.drift_repo import DriftRepo, last_run


def run_stats(repo: DriftRepo, run: str) -> dict[str, FeatureStats]:
    with connection(repo.store.config.duckdb_path, read_only=True) as con:
        return StatisticsState(con, "test").read(int(run.split("-")[1]))


def labels(values: pd.Series) -> pd.Series:
    return values.dropna().map(lambda v: str(v).lower() if isinstance(v, bool | np.bool_) else str(v))


def check_against_pandas(stats: dict[str, FeatureStats], frame: pd.DataFrame) -> None:
    """Every statistic of every column against pandas (quantiles: the 'lower' sample quantile)."""
    for name, s in stats.items():
        column = frame[name]
        values = column.dropna()
        assert (s.count, s.nulls) == (len(column), int(column.isna().sum())), name
        assert s.distinct == pytest.approx(values.nunique(), rel=0.05), name  # HyperLogLog
        if s.kind == "numeric":
            x = values.astype(float)
            assert (s.min, s.max) == (x.min(), x.max()), name
            assert s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(x.std(ddof=1)), name
            expected = [x.quantile(q, interpolation="lower") for q in QUANTILE_LEVELS]
            assert list(s.quantiles) == expected, name
            assert s.top == ()
        else:
            counts = labels(column).value_counts()
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_K]
            assert list(s.top) == [(str(v), int(n)) for v, n in ordered], name
            assert s.other == 0 and s.quantiles == ()
            if s.dtype == "BOOLEAN":
                assert s.mean == pytest.approx(values.astype(float).mean()), name


def test_a_run_keeps_the_statistics_of_the_rows_it_ingested(drift_repo: DriftRepo) -> None:  # noqa: F811
    # The shifted run ingested one file (with nulls in two columns): its statistics are of that file alone.
    stats = run_stats(drift_repo, drift_repo.shifted_run)
    assert len(stats) == 13 and stats["last_trip_km"].nulls > 400 and stats["vehicle_type"].nulls > 400
    check_against_pandas(stats, drift_repo.shifted_rows)
    check_against_pandas(run_stats(drift_repo, drift_repo.control_run), drift_repo.control_rows)
    check_against_pandas(run_stats(drift_repo, drift_repo.baseline_run), drift_repo.baseline_rows)


def test_statistics_are_queryable_in_duckdb(drift_repo: DriftRepo) -> None:  # noqa: F811
    run_id = int(drift_repo.shifted_run.split("-")[1])
    with connection(drift_repo.store.config.duckdb_path, read_only=True) as con:
        rows = con.execute(
            "SELECT feature, kind, count, quantiles[51], top_values FROM test.feature_statistics "
            "WHERE run_id = ? AND view = 'driver_stats' ORDER BY feature", [run_id]
        ).fetchall()
    by_feature = {r[0]: r for r in rows}
    assert len(rows) == 13 and {r[2] for r in rows} == {len(drift_repo.shifted_rows)}
    assert by_feature["conv_rate"][3] == drift_repo.shifted_rows["conv_rate"].astype(float).quantile(
        0.5, interpolation="lower")
    assert json.loads(by_feature["city"][4])[0] == [
        "Berlin", int((drift_repo.shifted_rows["city"] == "Berlin").sum())]


def test_a_run_that_ingests_nothing_has_no_statistics(drift_repo: DriftRepo) -> None:  # noqa: F811
    drift_repo.store.ingest(["customer_profile"])  # nothing changed
    assert run_stats(drift_repo, last_run(drift_repo.store, "customer_profile")) == {}


def test_a_training_set_keeps_the_statistics_of_its_feature_columns(drift_repo: DriftRepo) -> None:  # noqa: F811
    [record] = [r for r in drift_repo.store.training_sets() if r["id"] == drift_repo.training_set]
    output = pq.read_table(drift_repo.training_file).to_pandas()
    columns = record["manifest"]["columns"]
    assert sorted(record["statistics"]) == sorted(columns) and len(columns) == 16
    stats = {c: FeatureStats.from_dict(record["statistics"][c]) for c in columns}
    assert stats["conv_rate"].nulls > 0  # entity rows with no value in the TTL: nulls, counted
    check_against_pandas(stats, output[columns])
    # Recorded beside the manifest embedded in the file, which stays as it was (reproducible).
    embedded = json.loads(pq.read_schema(drift_repo.training_file).metadata[MANIFEST_KEY.encode()])
    assert "statistics" not in embedded and embedded == record["manifest"]


def test_statistics_of_other_types_nulls_and_many_values() -> None:
    con = duckdb.connect()
    con.execute(
        """CREATE TABLE t AS SELECT
             CAST(NULL AS DOUBLE) AS empty,
             TIMESTAMP '2026-01-01' + INTERVAL (i) MINUTE AS ts,
             [i, i + 1] AS list,
             'v' || CAST(i % 80 AS VARCHAR) AS label,
             CAST(i AS INTEGER) AS n
           FROM range(1000) r(i)"""
    )
    columns = ["empty", "ts", "list", "label", "n"]
    stats = {s.name: s for s in compute_statistics(con, "SELECT * FROM t", columns)}
    assert (stats["empty"].kind, stats["empty"].nulls, stats["empty"].quantiles) == ("numeric", 1000, ())
    assert stats["empty"].mean is None
    assert (stats["ts"].kind, stats["list"].kind) == (OTHER, OTHER) and stats["ts"].count == 1000
    label = stats["label"]  # 80 values, TOP_K kept: the rest counted together
    assert len(label.top) == TOP_K and label.other == 1000 - sum(n for _, n in label.top) > 0
    assert label.top[0] == ("v0", 13)  # 13 of each of v0..v39, 12 of the rest; ties by value
    n = stats["n"]
    assert (n.min, n.max, n.quantiles[50], n.quantiles[100]) == (0.0, 999.0, 499.0, 999.0)
    assert FeatureStats.from_dict(json.loads(json.dumps(label.to_dict()))) == label


def test_top_values_of_more_string_columns_than_one_grouping_query_takes() -> None:
    # DuckDB's grouping_id takes at most 64 columns; a view of 100 string features has more.
    con = duckdb.connect()
    select = ", ".join(f"'c{c}-' || CAST(i % {c + 2} AS VARCHAR) AS s{c}" for c in range(100))
    con.execute(f"CREATE TABLE t AS SELECT {select} FROM range(60) r(i)")
    columns = [f"s{c}" for c in range(100)]
    stats = compute_statistics(con, "SELECT * FROM t", columns)
    assert [s.name for s in stats] == columns
    for c, s in enumerate(stats):
        assert s.top[0] == (f"c{c}-0", len(range(0, 60, c + 2))), s.name


def test_nan_and_infinities_are_counted_and_kept_out_of_the_summary() -> None:
    con = duckdb.connect()
    con.execute(
        """CREATE TABLE t AS SELECT
             CASE WHEN i % 10 = 0 THEN 'nan'::DOUBLE WHEN i % 10 = 1 THEN 'inf'::DOUBLE
                  WHEN i % 10 = 2 THEN '-inf'::DOUBLE WHEN i % 10 = 3 THEN NULL
                  ELSE CAST(i AS DOUBLE) END AS x,
             CAST(CASE WHEN i % 2 = 0 THEN 'nan' ELSE '1.5' END AS FLOAT) AS y
           FROM range(1000) r(i)"""
    )
    stats = {s.name: s for s in compute_statistics(con, "SELECT * FROM t", ["x", "y"])}
    x = stats["x"]
    assert (x.count, x.nulls, x.non_finite, x.finite, x.missing) == (1000, 100, 300, 600, 400)
    finite = np.array([i for i in range(1000) if i % 10 > 3], dtype=float)  # the reference
    assert (x.min, x.max) == (finite.min(), finite.max())
    assert x.mean == pytest.approx(finite.mean()) and x.std == pytest.approx(finite.std(ddof=1))
    assert list(x.quantiles) == [float(np.quantile(finite, q, method="lower")) for q in QUANTILE_LEVELS]
    assert all(np.isfinite(x.quantiles))
    y = stats["y"]
    assert (y.non_finite, y.min, y.max, y.mean) == (500, 1.5, 1.5, 1.5)
    # Plain JSON (no NaN tokens), and a round trip keeps every field.
    text = json.dumps(x.to_dict(), allow_nan=False)
    assert FeatureStats.from_dict(json.loads(text)) == x
