"""Online-store fixtures: the session's redis-server, emptied for each test and named by the env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis import free_port
from tests.support.redis_cluster import RedisCluster


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of the module's own, for tests that migrate slots (the session's
    ``redis_cluster`` must stay as it is)."""
    with RedisCluster(tmp_path_factory.mktemp("own-cluster")) as cluster:
        yield cluster
