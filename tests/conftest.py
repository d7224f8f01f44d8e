"""Shared fixtures: a private redis-server on a free port, and temporary feature repos."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from featurestore import datagen
from tests.helpers import write_repo
from tests.support.redis import RedisServer, free_port

# Generated data ends here, so tests do not depend on the clock.
DATA_END = datetime(2026, 1, 31, tzinfo=UTC)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example data at the tiny scale, generated once per session."""
    out = tmp_path_factory.mktemp("tiny-data")
    datagen.generate(out, "tiny", end=DATA_END)
    return out


@pytest.fixture
def example_repo(tmp_path: Path, tiny_data: Path) -> Path:
    """A copy of definitions/ with tiny data, in its own folder (its own DuckDB file)."""
    repo = tmp_path / "repo"
    shutil.copytree(
        Path(__file__).parent.parent / "definitions",
        repo,
        ignore=shutil.ignore_patterns("data", ".featurestore", "__pycache__"),
    )
    shutil.copytree(tiny_data, repo / "data")
    return repo


@pytest.fixture
def make_repo(tmp_path: Path, tiny_data: Path):  # type: ignore[no-untyped-def]
    """make_repo({"file.py": source}) -> a repo folder with the tiny data under data/."""

    def make(files: dict[str, str], project: str = "test") -> Path:
        return write_repo(tmp_path / "repo", files, tiny_data, project)

    return make


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run the tests through 'make test'")
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """Database 0 of the session's redis-server, emptied, and named to FeatureStore by the env."""
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()
