"""The DuckDB file's connection: paths reach DuckDB as values, never as SQL text."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from tests.support.cli import run_cli
from tests.support.clock import DATA_END
from tests.support.repos import DRIVER_REPO, write_repo

# A folder name is data: one with a quote broke every command, one with a statement ran it.
FOLDERS = ["o'brien", "'; CREATE TABLE pwned(x int); --"]
# No TTL: the tiny data is older than a TTL would let materialize write.
DEFS = DRIVER_REPO.replace("ttl=timedelta(days=2)", "ttl=None")


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_repo_under_a_folder_named_like_sql_works_and_runs_nothing(
    tmp_path: Path, tiny_data: Path, redis_client: redis.Redis, folder: str
) -> None:
    repo = write_repo(tmp_path / folder / "repo", {"defs.py": DEFS}, tiny_data)
    entities = repo / "entities.parquet"
    pq.write_table(pa.table({"driver_id": pa.array([1001, 1002], pa.int64()),
                             "event_timestamp": pa.array([DATA_END] * 2, pa.timestamp("us", tz="UTC"))}),
                   entities)
    out = tmp_path / "t.parquet"
    build = ["training-set", "-e", str(entities), "-s", "driver_model", "-o", str(out)]
    for argv in (["apply"], ["materialize"], build):
        done = run_cli(*argv, "--repo", str(repo))
        assert done.returncode == 0, (argv, done.stderr)
    assert pq.read_table(out).num_rows == 2
    assert redis_client.dbsize() > 0  # materialized to Redis too
    with duckdb.connect(str(repo / ".featurestore" / "store.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    assert ("test", "offline_driver_stats") in tables
    assert not [t for t in tables if t[1] == "pwned"], tables
