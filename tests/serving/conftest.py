"""Serving fixtures: the example repo materialized into a private Redis, and a shared server.

The data ends at the current hour (``fresh_data``, not the fixed DATA_END), so served values are
within their views' TTLs and come back PRESENT. The Redis is private to this package: its tests
stop, freeze and restart it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving.support import MAX_ENTITIES, ServeProcess
from tests.support.redis import RedisServer, free_port
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
