"""On-demand fixtures: a repo with on-demand views, applied, on a private Redis, and its server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from featurestore import FeatureStore
from tests.on_demand.support import make_repo
from tests.serving.support import ServeProcess
from tests.support.redis import RedisServer, free_port


@pytest.fixture(scope="package")
def od_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("on-demand-redis")) as server:
        yield server


@pytest.fixture(scope="package")
def od_repo(tmp_path_factory: pytest.TempPathFactory, od_redis: RedisServer) -> Path:
    """The repo, applied and materialized (one seed row), its Redis in the env of the package."""
    repo = make_repo(tmp_path_factory.mktemp("on-demand") / "repo", datetime.now(UTC))
    toml = repo / "featurestore.toml"
    toml.write_text(toml.read_text() + f'\n[online]\nredis_url = "{od_redis.url}"\n')
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize()
    fs.close()
    return repo


@pytest.fixture(scope="package")
def od_server(od_repo: Path, od_redis: RedisServer) -> Iterator[ServeProcess]:
    """`featurestore serve` of the repo, giving on-demand functions half a second."""
    process = ServeProcess(od_repo, od_redis.url, "--on-demand-timeout", "0.5")
    try:
        yield process.start()
    finally:
        process.stop()
