"""CLI fixtures: the example repo applied and ingested once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.repos import copy_example_repo


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """The example repo, applied and ingested (no Redis needed); tests that damage it work on a copy."""
    repo = copy_example_repo(tmp_path_factory.mktemp("bad-input") / "repo", tiny_data)
    for command in (("apply",), ("materialize", "--offline")):
        assert run_cli(*command, "--repo", str(repo)).returncode == 0
    return repo
