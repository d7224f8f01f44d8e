"""The Makefile's two entry points: `make demo` installs the runtime package only, `make test` adds dev tools.

Read from `make -n` (what make would run) against a virtual environment that does not exist,
so every install step shows and nothing runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def planned(target: str, venv: Path) -> list[str]:
    result = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "pip install" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_demo_installs_the_runtime_package_and_test_adds_the_dev_extras(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    assert planned("demo", venv) == [f"{venv}/bin/pip install --quiet -e ."]
    assert planned("test", venv) == [f"{venv}/bin/pip install --quiet -e .",
                                     f"{venv}/bin/pip install --quiet -e '.[dev]'"]
