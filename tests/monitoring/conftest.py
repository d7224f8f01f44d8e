"""Monitoring fixtures: the example repo materialized into a private Redis (data ending now)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from featurestore import datagen
from tests.serving.support import materialized_example_repo
from tests.support.redis import RedisServer, free_port


@pytest.fixture(scope="package")
def monitoring_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("monitoring-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def fresh_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny example data, ending at the current hour (so within the views' TTLs)."""
    out = tmp_path_factory.mktemp("monitoring-data")
    datagen.generate(out, "tiny")
    return out


@pytest.fixture(scope="package")
def served_repo(
    tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, monitoring_redis: RedisServer
) -> Path:
    """The example repo, applied and materialized through the CLI."""
    return materialized_example_repo(
        tmp_path_factory.mktemp("monitored") / "repo", fresh_data, monitoring_redis.url
    )


def scrape(http_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed by prometheus-client's own parser: {(sample name, labels): value}."""
    response = httpx.get(f"{http_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a counter never incremented is not exported)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
