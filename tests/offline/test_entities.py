"""A SQL entity frame: one SELECT over the store's tables, and nothing else runs or is read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from tests.support.cli import run_cli

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFS = '''
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
stats = FeatureView("stats", entities=[driver], schema=[Field("trips", Int64)],
                    source=ParquetSource("stats_src", path="data/stats.parquet", timestamp_field="ts"))
'''
ROWS = ("SELECT * FROM (VALUES (1::BIGINT, TIMESTAMPTZ '2026-03-01 13:00:00+00')) "
        "t(driver_id, event_timestamp)")


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "ents"\n')
    (repo / "defs.py").write_text(DEFS)
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2, 1], pa.int64()),
        "ts": pa.array([T0, T0, T0 + timedelta(minutes=5)], pa.timestamp("us", tz="UTC")),
        "trips": pa.array([10, 20, 11], pa.int64()),
    }), repo / "data" / "stats.parquet")
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    return fs


def trips(fs: FeatureStore, sql: str) -> list[int]:
    with fs.get_training_set(sql, ["stats:trips"]) as ts:
        return list(ts.to_arrow().column("trips").to_pylist())


def test_a_query_over_the_store_tables_works(store: FeatureStore) -> None:
    assert trips(store, ROWS) == [11]
    sql = ("SELECT driver_id, __event_ts + INTERVAL 1 MINUTE AS event_timestamp "
           "FROM ents.offline_stats ORDER BY __seq")
    assert trips(store, sql) == [10, 20, 11]


def test_stacked_statements_run_nothing(store: FeatureStore, tmp_path: Path) -> None:
    written = tmp_path / "written.csv"
    attacks = [
        # Closes the parenthesis the query used to be wrapped in, then runs a COPY.
        f"{ROWS}) ; COPY (SELECT 42) TO '{written}'; --",
        f"{ROWS}; COPY (SELECT 42) TO '{written}'",
        f"{ROWS}; SELECT 1",
    ]
    for sql in attacks:
        with pytest.raises(Exception) as raised:
            trips(store, sql)
        assert not written.exists(), sql  # it was, by the COPY, before the query failed
        assert raised.type is InvalidRequestError, raised.value
        assert re.search("exactly one SELECT statement|cannot parse the entity query", str(raised.value))


@pytest.mark.parametrize(
    "statement", ["PRAGMA version", "CREATE TABLE ents.x AS SELECT 1", "SET threads = 1", "DETACH store"]
)
def test_only_a_select_is_accepted(store: FeatureStore, statement: str) -> None:
    with pytest.raises(InvalidRequestError, match="must be exactly one SELECT statement, got"):
        trips(store, statement)


@pytest.mark.parametrize("reader", ["read_text", "read_parquet", "read_csv", "glob", "parquet_metadata"])
def test_a_query_reads_no_file(store: FeatureStore, tmp_path: Path, reader: str) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("driver_id\n1\n")
    if reader.startswith("parquet") or reader == "read_parquet":
        secret = tmp_path / "secret.parquet"
        pq.write_table(pa.table({"driver_id": pa.array([1], pa.int64())}), secret)
    sql = f"SELECT 1::BIGINT AS driver_id, TIMESTAMPTZ '2026-03-01 13:00:00+00' AS event_timestamp, " \
          f"* FROM {reader}('{secret}')"
    with pytest.raises(InvalidRequestError, match="may read only the store's tables"):
        trips(store, sql)


def test_the_query_runs_with_external_access_off(store: FeatureStore) -> None:
    # Turning it back on would take a SET: not a SELECT, and the settings are locked anyway.
    sql = f"{ROWS} WHERE current_setting('enable_external_access') = false"
    assert trips(store, sql) == [11]


def test_the_cli_refuses_a_query_as_entities_in_one_line(store: FeatureStore, tmp_path: Path) -> None:
    # The CLI reads entity rows from a Parquet file only; an attack string is not run as SQL.
    written = tmp_path / "written.csv"
    attack = f"{ROWS}) ; COPY (SELECT 42) TO '{written}'; --"
    done = run_cli("training-set", "--repo", str(store.config.repo), "--entities", attack,
                   "--features", "stats:trips", "--out", str(tmp_path / "out.parquet"))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "does not exist" in done.stderr
    assert not written.exists() and not (tmp_path / "out.parquet").exists()
