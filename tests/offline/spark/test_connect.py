"""The Spark engine over Spark Connect (``remote = "sc://..."``), through the real CLI: the
server's tasks validate, write and join, and the outputs equal the DuckDB engine's, with one
source read from a URI that only the server's Hadoop configuration can reach.

PySpark chooses Connect or classic mode per process, so this runs in CLI subprocesses (the
test process holds the suite's local[2] session); a process asking for both gets one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from featurestore import FeatureStore
from featurestore.config import SparkSettings
from featurestore.errors import OfflineEngineUnavailable
from featurestore.offline.spark.session import spark_session
from tests.offline.spark.support import Ingested, same_store
from tests.support.cli import run_cli
from tests.support.repos import copy_example_repo
from tests.support.spark import use_spark
from tests.support.spark_connect import SparkConnectServer

SLOW = 600  # seconds: Spark jobs through a Connect server on a loaded 2-core machine


def test_ingestion_and_training_sets_over_spark_connect(
    tmp_path: Path, tiny_data: Path, spark_connect: SparkConnectServer, example_on_duckdb: Ingested
) -> None:
    duck, ingested = example_on_duckdb.store, example_on_duckdb.results
    remote_repo = use_spark(copy_example_repo(tmp_path / "remote", tiny_data), remote=spark_connect.url)
    # One source (a glob) only in the server's lake: neither the CLI nor this process can open it.
    uri, lake = spark_connect.lake
    folder = f"{tmp_path.name}/customer_profile"
    (lake / tmp_path.name).mkdir()
    shutil.move(remote_repo / "data" / "customer_profile", lake / folder)
    defs = remote_repo / "customers.py"
    text = defs.read_text()
    assert '"data/customer_profile/*.parquet"' in text
    defs.write_text(text.replace('"data/customer_profile/', f'"{uri}/{folder}/'))
    assert run_cli("apply", "--repo", str(remote_repo)).returncode == 0
    done = run_cli("materialize", "--offline", "--repo", str(remote_repo), "--json", timeout=SLOW)
    assert done.returncode == 0, done.stderr
    assert {v["view"]: v["rows_inserted"] for v in json.loads(done.stdout)["ingestion"]} == {
        r.view: r.rows_inserted for r in ingested
    }
    remote = FeatureStore(remote_repo)
    moved = (f"{uri}/{folder}", "data/customer_profile")
    same_store(duck, remote, [r.view for r in ingested], moved)  # read through DuckDB: no Spark here
    entities = example_on_duckdb.entities
    with duck.get_training_set(entities, "trip_model") as ts:
        want = ts.to_arrow()
    out = tmp_path / "remote-out"
    made = run_cli(
        "training-set",
        "--repo",
        str(remote_repo),
        "-e",
        str(entities),
        "-s",
        "trip_model",
        "-o",
        str(out),
        timeout=SLOW,
    )
    assert made.returncode == 0, made.stderr
    got = pq.read_table(out)
    assert want.num_rows > 0 and got.select(want.column_names).cast(want.schema).equals(want)


def test_one_process_cannot_mix_spark_connect_and_its_own_spark(spark: SparkSession) -> None:
    with pytest.raises(OfflineEngineUnavailable, match="already runs Spark itself"):
        spark_session(SparkSettings(remote="sc://127.0.0.1:1", connect_timeout=1))
