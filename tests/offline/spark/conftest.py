"""The example repo ingested once per package by each engine, for the tests that only read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from tests.offline.spark.support import Ingested, ingested_example


@pytest.fixture(scope="package")
def example_on_duckdb(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Iterator[Ingested]:
    """The example repo (tiny data) applied and ingested by the DuckDB engine."""
    with ingested_example(tmp_path_factory.mktemp("example-duckdb"), tiny_data) as example:
        yield example


@pytest.fixture(scope="package")
def example_on_spark(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, spark: SparkSession
) -> Iterator[Ingested]:
    """The same repo in a folder of its own, applied and ingested by the Spark engine (local[2])."""
    with ingested_example(tmp_path_factory.mktemp("example-spark"), tiny_data, on_spark=True) as example:
        yield example
