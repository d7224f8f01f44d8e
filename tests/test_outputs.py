"""Files written where a user says: never over the store or a source, never half written."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError
from featurestore.outputs import atomic_folder, atomic_write
from tests.support.cli import one_line_error, run_cli

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# Three sources, one of each form a path can take: a file, a folder, a glob.
DEFS = '''
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])

def view(name, path):
    source = ParquetSource(name + "_src", path=path, timestamp_field="ts")
    return FeatureView(name, entities=[driver], source=source, schema=[Field("trips", Int64)])

by_file = view("by_file", "data/file.parquet")
by_folder = view("by_folder", "data/folder")
by_glob = view("by_glob", "data/glob/part-*.parquet")
'''


def rows(path: Path, n: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "driver_id": pa.array([1 + i % 2 for i in range(n)], pa.int64()),
        "ts": pa.array([T0 + timedelta(minutes=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "trips": pa.array(list(range(n)), pa.int64()),
    }), path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Applied and ingested; entities.parquet holds entity rows for training sets."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "featurestore.toml").write_text('project = "outs"\n')
    (repo / "defs.py").write_text(DEFS)
    for path in ("file.parquet", "folder/a.parquet", "glob/part-1.parquet"):
        rows(repo / "data" / path)
    pq.write_table(pa.table({
        "driver_id": pa.array([1, 2], pa.int64()),
        "event_timestamp": pa.array([T0 + timedelta(hours=1)] * 2, pa.timestamp("us", tz="UTC")),
    }), tmp_path / "entities.parquet")
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    return repo


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_set(repo: Path, out: Path | str) -> subprocess.CompletedProcess[str]:
    return run_cli("training-set", "--repo", str(repo), "--entities", str(repo.parent / "entities.parquet"),
                   "--features", "by_file:trips", "--out", str(out))


def test_training_set_out_over_the_store_file_is_refused_and_the_store_survives(repo: Path) -> None:
    store = repo / ".featurestore" / "store.duckdb"
    before = digest(store)
    done = training_set(repo, store)
    one_line_error(done, f"output {store} is inside the store's folder")
    assert digest(store) == before
    assert [v.name for v in FeatureStore(repo).list_feature_views()] == ["by_file", "by_folder", "by_glob"]
    # Relative to the working folder, and a new file in the folder, are refused alike.
    done = run_cli("training-set", "--entities", "../entities.parquet", "--features", "by_file:trips",
                   "--out", ".featurestore/new.parquet", cwd=repo)
    one_line_error(done, "is inside the store's folder")
    assert not (repo / ".featurestore" / "new.parquet").exists()


def test_training_set_out_over_a_source_file_is_refused_and_the_source_survives(repo: Path) -> None:
    source = repo / "data" / "file.parquet"
    before = digest(source)
    one_line_error(training_set(repo, source), "would overwrite data of source 'by_file_src'")
    assert digest(source) == before


def link(target: Path, at: Path) -> Path:
    at.symlink_to(target)
    return at


# Each is a path a source reads, or would read once written, however it is spelled.
TARGETS: dict[str, Callable[[Path], Path]] = {
    "the file source": lambda r: r / "data" / "file.parquet",
    "the file source, spelled with ..": lambda r: r / "data" / "folder" / ".." / "file.parquet",
    "a file of the folder source": lambda r: r / "data" / "folder" / "a.parquet",
    "a new file in the folder source": lambda r: r / "data" / "folder" / "deeper" / "new.parquet",
    "a file the glob matches": lambda r: r / "data" / "glob" / "part-1.parquet",
    "a new file the glob would match": lambda r: r / "data" / "glob" / "part-9.parquet",
    "a symlink to the file source": lambda r: link(r / "data" / "file.parquet", r.parent / "out.parquet"),
    "a file via a symlink to the folder source": lambda r: link(r / "data" / "folder", r.parent / "f") / "x",
    "a file under a symlink to the store": lambda r: link(r / ".featurestore", r.parent / "s") / "x",
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_spelling_of_a_source_or_store_path_is_written(repo: Path, name: str) -> None:
    target = TARGETS[name](repo)
    files = sorted(p for p in repo.rglob("*") if p.is_file())
    before = {p: digest(p) for p in files}
    fs = FeatureStore(repo)
    entities = pa.table({"driver_id": pa.array([1], pa.int64()),
                         "event_timestamp": pa.array([T0], pa.timestamp("us", tz="UTC"))})
    with fs.get_training_set(entities, ["by_file:trips"]) as ts:
        with pytest.raises(InvalidRequestError, match="would overwrite data of source|inside the store's"):
            ts.to_parquet(target)
    assert sorted(p for p in repo.rglob("*") if p.is_file()) == files
    assert {p: digest(p) for p in files} == before


def test_an_output_elsewhere_is_written_whole(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "train.parquet"
    done = training_set(repo, out)
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 2
    assert [p.name for p in out.parent.iterdir()] == ["train.parquet"]  # no partial file left


def test_reproduce_and_drift_refuse_the_store_and_sources(repo: Path) -> None:
    fs = FeatureStore(repo)
    with fs.get_training_set(repo.parent / "entities.parquet", ["by_file:trips"]) as ts:
        ts.to_parquet(repo.parent / "train.parquet")
        training_set_id = ts.manifest["id"]
    store = repo / ".featurestore" / "store.duckdb"
    before = digest(store)
    done = run_cli("training-set", "reproduce", training_set_id, "--repo", str(repo), "--out", str(store))
    one_line_error(done, "is inside the store's folder")
    source = repo / "data" / "folder" / "a.parquet"
    source_before = digest(source)
    done = run_cli("drift", "by_folder", "--baseline", "latest", "--repo", str(repo), "--html", str(source))
    one_line_error(done, "would overwrite data of source 'by_folder_src'")
    assert digest(store) == before and digest(source) == source_before
    with pytest.raises(InvalidRequestError, match="inside the store's folder"):
        fs.reproduce_training_set(training_set_id, store)
    assert digest(store) == before


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("the old report")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as partial:
        partial.write_text("half of the new")
        raise KeyboardInterrupt
    assert target.read_text() == "the old report"
    assert os.listdir(tmp_path) == ["report.html"]
    with atomic_write(target) as partial:
        partial.write_text("the new report")
    assert target.read_text() == "the new report"
    assert os.listdir(tmp_path) == ["report.html"]


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("data", "would overwrite data of source"),  # holds every source
        ("data/glob", "would overwrite data of source 'by_glob_src'"),
        (".", "holds the store's folder"),
        (".featurestore/out", "inside the store's folder"),
        ("data/file.parquet", "is a file: give a folder path"),
        ("defs_folder", "not a Parquet dataset"),
    ],
)
def test_a_dataset_folder_output_may_hold_no_source_nor_the_store(repo: Path, where: str, match: str) -> None:
    (repo / "defs_folder").mkdir()
    for dataset in ("data", "data/glob", "."):  # folders that look like datasets we wrote
        (repo / dataset / "_common_metadata").touch()
    guard = FeatureStore(repo).output_guard()
    with pytest.raises(InvalidRequestError, match=match):
        guard.check(repo / where, folder=True)


def test_a_dataset_folder_replaces_only_a_dataset_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    for text in ("old", "new"):
        with atomic_folder(target) as partial:
            partial.mkdir()
            (partial / "_common_metadata").write_text(text)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial or old folder left
    assert (target / "_common_metadata").read_text() == "new"
    with pytest.raises(RuntimeError), atomic_folder(target) as partial:
        partial.mkdir()
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "_common_metadata").read_text() == "new"
