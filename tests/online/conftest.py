"""Online-store fixtures: the session's redis-server, emptied for each test and named by the env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import RedisServer, free_port


@pytest.fixture
def redis_client(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A client of database 0 of the session's server, which FeatureStore uses; all DBs start empty."""
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"
