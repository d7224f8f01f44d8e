"""Monitoring fixtures: the example repo materialized into a private Redis (data ending now),
and a repo with a known drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring.drift_repo import DriftRepo, build
from tests.support.redis import RedisServer, free_port
from tests.support.repos import materialized_example_repo


@pytest.fixture(scope="package")
def monitoring_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("monitoring-redis")) as server:
        yield server


@pytest.fixture(scope="package")
def served_repo(
    tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, monitoring_redis: RedisServer
) -> Path:
    """The example repo, applied and materialized through the CLI."""
    dest = tmp_path_factory.mktemp("monitored") / "repo"
    return materialized_example_repo(dest, fresh_data, monitoring_redis.url)


@pytest.fixture(scope="module")
def drift_repo(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> DriftRepo:
    """The example repo with a known drift (see drift_repo.py), built once per test module."""
    return build(tmp_path_factory.mktemp("drift"), tiny_data)
