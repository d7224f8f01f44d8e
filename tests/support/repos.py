"""Feature repos on disk for tests: hand-written definitions over given Parquet tables, or a
copy of the example repo (definitions/) over generated data."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from tests.support.cli import run_cli

ROOT = Path(__file__).parent.parent.parent
EXAMPLE_REPO = ROOT / "definitions"

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


def write_repo(repo: Path, files: dict[str, str], data: Path | None = None, project: str = "test") -> Path:
    """A repo folder with featurestore.toml, the given Python files and ``data`` copied to data/."""
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "featurestore.toml").write_text(f'project = "{project}"\n')
    if data is not None and not (repo / "data").exists():
        shutil.copytree(data, repo / "data")
    for name, source in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return repo


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) by ``new`` in a repo's file."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def write_parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def make_store(
    repo: Path,
    defs: str,
    tables: Mapping[str, pa.Table] | None = None,
    *,
    project: str = "test",
    apply: bool = True,
) -> FeatureStore:
    """A repo with ``defs.py`` and the given Parquet tables (paths under data/), opened and,
    unless ``apply=False``, applied."""
    write_repo(repo, {"defs.py": defs}, project=project)
    for name, table in (tables or {}).items():
        write_parquet(repo / "data" / name, table)
    fs = FeatureStore(repo)
    if apply:
        fs.apply()
    return fs


def copy_example_repo(dest: Path, data: Path, redis_url: str | None = None) -> Path:
    """definitions/ with ``data`` under data/ (its own DuckDB file), pointed at ``redis_url``."""
    ignore = shutil.ignore_patterns("data", "out", ".featurestore", "__pycache__")
    shutil.copytree(EXAMPLE_REPO, dest, ignore=ignore)
    shutil.copytree(data, dest / "data")
    if redis_url is not None:
        toml = dest / "featurestore.toml"
        toml.write_text(toml.read_text().replace("redis://127.0.0.1:6379/0", redis_url))
    return dest


def copy_of(repo: Path, tmp_path: Path) -> Path:
    """A copy of ``repo`` (its DuckDB file too) in ``tmp_path``, for a test that damages it."""
    shutil.copytree(repo, tmp_path / "copy")
    return tmp_path / "copy"


def materialized_example_repo(dest: Path, data: Path, redis_url: str) -> Path:
    """copy_example_repo, then applied and materialized through the CLI."""
    repo = copy_example_repo(dest, data, redis_url)
    for command in ("apply", "materialize"):
        result = run_cli(command, "--repo", str(repo), env={"FEATURESTORE_REDIS_URL": redis_url})
        assert result.returncode == 0, result.stderr
    return repo
