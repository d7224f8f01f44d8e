"""Serving fixtures: the example repo materialized into a private Redis, and a shared server.

The data ends at the current hour (``fresh_data``, not the fixed DATA_END), so served values are
within their views' TTLs and come back PRESENT. The Redis is private to this package: its tests
stop, freeze and restart it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.support import MAX_ENTITIES, ServeProcess, copy_to_cluster
from tests.support.redis import RedisServer, free_port
from tests.support.redis_cluster import RedisCluster
from tests.support.repos import materialized_example_repo


@pytest.fixture(scope="package")
def serving_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("serving-redis")) as server:
        yield server


@pytest.fixture(scope="package")
def served_repo(
    tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, serving_redis: RedisServer
) -> Path:
    """The example repo, applied and materialized through the CLI."""
    dest = tmp_path_factory.mktemp("served") / "repo"
    return materialized_example_repo(dest, fresh_data, serving_redis.url)


@pytest.fixture(scope="package")
def server(served_repo: Path, serving_redis: RedisServer) -> Iterator[ServeProcess]:
    """One `featurestore serve` shared by the tests that do not stop it or its Redis."""
    process = ServeProcess(served_repo, serving_redis.url, "--max-entities", str(MAX_ENTITIES))
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cluster_server(
    served_repo: Path, serving_redis: RedisServer, redis_cluster: RedisCluster
) -> Iterator[ServeProcess]:
    """`featurestore serve` on the session's Redis Cluster, which holds a copy of what the
    package's Redis holds (the served repo, materialized)."""
    assert copy_to_cluster(serving_redis.url, redis_cluster) > 0
    process = ServeProcess(served_repo, redis_cluster.url, "--max-entities", str(MAX_ENTITIES))
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def own_cluster(
    tmp_path_factory: pytest.TempPathFactory, serving_redis: RedisServer, served_repo: Path
) -> Iterator[RedisCluster]:
    """A Redis Cluster of the module's own (its tests kill and reshard), holding the served repo.

    Its nodes keep serving the slots they have while another's are uncovered
    (cluster-require-full-coverage no): by default the whole cluster answers CLUSTERDOWN
    from the moment a master is marked failed until its replica is promoted."""
    with RedisCluster(tmp_path_factory.mktemp("own-cluster")) as cluster:
        for port in cluster.ports:
            with cluster.client(port) as node:
                node.config_set("cluster-require-full-coverage", "no")
        copy_to_cluster(serving_redis.url, cluster)
        yield cluster
