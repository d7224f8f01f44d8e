"""Online-store fixtures: the session's redis-server, emptied for each test and named by the env."""

from __future__ import annotations

import pytest

from tests.support.redis import free_port


@pytest.fixture
def closed_redis_url() -> str:
    """A Redis URL where nothing listens: connections are refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"
