"""Helpers for tests that build feature repos on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")

DRIVER_REPO = '''
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float32, Int32, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
source = ParquetSource("driver_source", path="data/driver_stats",
                       timestamp_field="event_timestamp", created_timestamp_field="created")
driver_stats = FeatureView(
    "driver_stats", entities=[driver], source=source, ttl=timedelta(days=2),
    schema=[Field("conv_rate", Float32), Field("acc_rate", Float32),
            Field("avg_daily_trips", Int32)],
)
service = FeatureService("driver_model", features=[driver_stats])
'''


def write_repo(repo: Path, files: dict[str, str], data: Path, project: str = "test") -> Path:
    """A repo folder with featurestore.toml, the given Python files and data/ copied in."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "featurestore.toml").write_text(f'project = "{project}"\n')
    if not (repo / "data").exists():
        shutil.copytree(data, repo / "data")
    for name, source in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return repo


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run the installed ``featurestore`` console script, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("FEATURESTORE_DEBUG", None)
    return subprocess.run([FEATURESTORE, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)
