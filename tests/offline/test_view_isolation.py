"""One bad view or file stops only itself: the run goes on with the other views, exits 1 naming
each failed view and why (its own file), and the run record says which views were written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore
from featurestore.runs.ingestion import read_rejected
from featurestore.storage import connection
from tests.support.cli import run_cli

DEFS = """
from pandera.pandas import Check
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])


def view(name, policy):
    return FeatureView(name, entities=[item], on_invalid=policy,
                       source=ParquetSource(name + "_src", path="data/" + name, timestamp_field="ts"),
                       schema=[Field("v", Int64, checks=[Check.ge(0)])])


good = view("good", "fail")
strict = view("strict", "fail")
lenient = view("lenient", "quarantine")
broken = view("broken", "fail")
"""
IDS = list(range(10))


def rows(vs: list[int]) -> pa.Table:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return pa.table(
        {
            "id": pa.array(IDS, pa.int64()),
            "ts": pa.array([ts] * len(IDS), pa.timestamp("us", tz="UTC")),
            "v": pa.array(vs, pa.int64()),
        }
    )


@pytest.fixture
def repo(tmp_path: Path, redis_client: redis.Redis) -> Path:
    """Four views, each with a valid file; ``strict`` also has a file with a negative value."""
    repo = tmp_path / "repo"
    for view in ("good", "strict", "lenient", "broken"):
        (repo / "data" / view).mkdir(parents=True)
        pq.write_table(rows(IDS), repo / "data" / view / "part-0.parquet")
    pq.write_table(rows([-1] * len(IDS)), repo / "data" / "strict" / "part-1.parquet")
    (repo / "featurestore.toml").write_text('project = "iso"\n')
    (repo / "defs.py").write_text(DEFS)
    return repo


def cli(repo: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, "--repo", str(repo))
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout, result.stderr


def served(repo: Path, view: str) -> list[int | None]:
    return list(FeatureStore(repo).get_online_features([f"{view}:v"], {"id": IDS}).to_dict()["v"])


def test_a_view_failing_validation_fails_alone(repo: Path) -> None:
    assert cli(repo, "apply")[0] == 0
    code, out, err = cli(repo, "materialize")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: feature view failed, the others were written: 'strict': ")
    assert "strict/part-1.parquet" in line  # its own file
    assert not any(other in line for other in ("good", "lenient", "broken"))
    assert "Run 1:" in out  # the summary of what was written comes first
    for view in ("good", "lenient", "broken"):
        assert served(repo, view) == IDS
    assert served(repo, "strict") == [None] * len(IDS)

    fs = FeatureStore(repo)
    with connection(fs.config.duckdb_path, read_only=True) as con:
        views, failed = con.execute("SELECT views, failed_views FROM iso.materialization_runs").fetchone()
    assert sorted(views) == ["broken", "good", "lenient"]
    assert list(json.loads(failed)) == ["strict"]
    (rejected,) = read_rejected(fs.config.store_dir)
    assert rejected["view"] == "strict" and "strict/part-1.parquet" in rejected["error"]

    # Scripts read the same from --json: what was written, and each failed view with its reason.
    for args in (("materialize", "--json"), ("materialize", "--offline", "--json")):
        code, out, err = cli(repo, *args)
        assert code == 1 and err.startswith("error: feature view failed"), (args, err)
        report = json.loads(out)
        assert list(report["failed"]) == ["strict"], args
        assert "strict/part-1.parquet" in report["failed"]["strict"], args


def test_a_file_that_is_not_parquet_is_set_aside_or_fails_its_view_only(repo: Path) -> None:
    (repo / "data" / "strict" / "part-1.parquet").unlink()
    for view in ("lenient", "broken"):
        (repo / "data" / view / "notes.parquet").write_text("not a Parquet file\n")

    assert cli(repo, "plan")[0] == 0
    assert cli(repo, "apply")[0] == 0
    code, out, _ = cli(repo, "validate")
    assert code == 1  # reported, every view checked
    text = " ".join(out.split())
    for view in ("lenient", "broken"):
        assert f"feature view {view!r}: {repo}/data/{view}/notes.parquet is not a readable" in text

    code, out, err = cli(repo, "materialize")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "error: feature view failed, the others were written: 'broken': feature view 'broken': "
        f"{repo}/data/broken/notes.parquet is not a readable Parquet file"
    )
    text = " ".join(out.split())
    note = f"lenient: set aside, not ingested: feature view 'lenient': {repo}/data/lenient/notes.parquet"
    assert note in text
    for view in ("good", "strict", "lenient"):
        assert served(repo, view) == IDS
    assert served(repo, "broken") == [None] * len(IDS)
    (kept,) = (FeatureStore(repo).config.store_dir / "quarantine" / "lenient").iterdir()
    assert kept.name.startswith("notes.parquet-") and kept.read_text() == "not a Parquet file\n"
