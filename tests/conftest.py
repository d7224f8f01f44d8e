"""Shared fixtures: a private redis-server on a free port, and temporary feature repos."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from pyspark.sql import SparkSession

from featurestore import datagen
from tests.support.clock import DATA_END
from tests.support.redis import RedisServer, free_port
from tests.support.redis_cluster import RedisCluster
from tests.support.repos import copy_example_repo, write_repo
from tests.support.spark import SETTINGS as SPARK_SETTINGS
from tests.support.spark_cluster import SparkCluster
from tests.support.spark_connect import SparkConnectServer


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example data at the tiny scale, ending at DATA_END, generated once per session."""
    out = tmp_path_factory.mktemp("tiny-data")
    datagen.generate(out, "tiny", end=DATA_END)
    return out


@pytest.fixture(scope="session")
def fresh_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny example data ending at the current hour, so served values are within their
    views' TTLs (the demo's data ends there too)."""
    out = tmp_path_factory.mktemp("fresh-data")
    datagen.generate(out, "tiny")
    return out


@pytest.fixture
def example_repo(tmp_path: Path, tiny_data: Path) -> Path:
    """A copy of definitions/ with tiny data, in its own folder (its own DuckDB file)."""
    return copy_example_repo(tmp_path / "repo", tiny_data)


@pytest.fixture
def make_repo(tmp_path: Path, tiny_data: Path) -> Callable[..., Path]:
    """make_repo({"file.py": source}) -> a repo folder with the tiny data under data/."""

    def make(files: dict[str, str], project: str = "test") -> Path:
        return write_repo(tmp_path / "repo", files, tiny_data, project)

    return make


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local[2] SparkSession for the run (a JVM start costs seconds); repos made to use the
    Spark engine with ``tests.support.spark.use_spark`` share it."""
    from featurestore.offline.spark.session import spark_session, stop_sessions

    yield spark_session(SPARK_SETTINGS)
    stop_sessions()


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkConnectServer]:
    """A Spark Connect server for the run (its own JVM, local[1]); repos reach it with
    ``use_spark(repo, remote=server.url)``."""
    with SparkConnectServer(tmp_path_factory.mktemp("spark-connect")) as server:
        yield server


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A real Spark standalone master and worker for the session (~15 s to start). Its jobs run
    in another process, e.g. the CLI: this one's SparkContext is the local[2] one."""
    with SparkCluster(tmp_path_factory.mktemp("spark-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run the tests through 'make test'")
    with RedisServer(free_port(), tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 masters, 3 replicas) for the session. Tests that kill or
    reshard nodes start their own (tests/support/redis_cluster.py)."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_client(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """Database 0 of the session's redis-server, emptied, and named to FeatureStore by the env."""
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()
