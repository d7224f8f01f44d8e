"""Online-store fixtures: the session's redis-server or Redis Cluster, emptied for each test
and named by the env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.cluster

from tests.online.helpers import CLEAN_REDIS_URL
from tests.support.redis import RedisClient, RedisServer, free_port
from tests.support.redis_cluster import RedisCluster


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture(params=["redis", "cluster"])
def any_redis(
    request: pytest.FixtureRequest, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisClient]:
    """A test that takes this runs twice: on the session's redis-server (database 0) and on
    the session's Redis Cluster (tests/conftest.py), emptied and named to FeatureStore by the
    env. On the cluster, clean runs (helpers.clean_run_dump) go to the redis-server, which
    makes their comparisons a check of parity too."""
    client: RedisClient
    if request.param == "redis":
        url = redis_server.url
        client = redis.Redis.from_url(url)
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        monkeypatch.setenv(CLEAN_REDIS_URL, redis_server.url)
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of the module's own, for tests that migrate slots (the session's
    ``redis_cluster`` must stay as it is)."""
    with RedisCluster(tmp_path_factory.mktemp("own-cluster")) as cluster:
        yield cluster
