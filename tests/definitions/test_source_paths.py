"""A ParquetSource path is a file, a folder (every *.parquet under it) or a glob, relative to the
repo: the files each form names are the ones applied, ingested and read into training sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, ParquetSource
from tests.support.repos import make_store

START = datetime(2026, 1, 1, tzinfo=UTC)

# File -> row count; the counts are powers of two, so a sum names exactly one set of files.
FILES = {
    "parts/top.parquet": 8,
    "parts/2026/a.parquet": 1,
    "parts/2026/b.parquet": 2,
    "parts/other/c.parquet": 4,
}
# Not Parquet: a folder source skips them, and no glob below matches them.
OTHER_FILES = ["parts/notes.txt", "parts/2026/_SUCCESS"]

PATHS = {
    "by_file": ("data/parts/other/c.parquet", ["parts/other/c.parquet"]),
    "by_folder": ("data/parts", sorted(FILES)),
    "by_glob": ("data/parts/2026/*.parquet", ["parts/2026/a.parquet", "parts/2026/b.parquet"]),
    "by_recursive_glob": ("data/parts/**/*.parquet", sorted(FILES)),
}

DEFS = (
    "from featurestore import Entity, FeatureView, Field, Float64, ParquetSource\n"
    'item = Entity("item", join_keys=["item_id"])\n'
) + "".join(
    f'{name} = FeatureView("{name}", entities=[item], schema=[Field("value", Float64)],\n'
    f'    source=ParquetSource("{name}_src", path="{path}", timestamp_field="ts"))\n'
    for name, (path, _) in PATHS.items()
)


def write_data(data: Path) -> None:
    """Each file's rows carry item ids unique to the file and its row count as the value."""
    first_id = 0
    for name, rows in FILES.items():
        path = data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "item_id": pa.array(range(first_id, first_id + rows), pa.int64()),
                "ts": pa.array(
                    [START + timedelta(minutes=i) for i in range(rows)], pa.timestamp("us", "UTC")
                ),
                "value": pa.array([float(rows)] * rows, pa.float64()),
            }
        )
        pq.write_table(table, path)
        first_id += rows
    for name in OTHER_FILES:
        (data / name).write_text("not parquet\n")


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    """The repo with every path form, not yet applied."""
    repo = tmp_path / "repo"
    write_data(repo / "data")
    return make_store(repo, DEFS, apply=False)


def test_each_path_form_names_its_files(fs: FeatureStore) -> None:
    repo = fs.config.repo
    data = repo / "data"
    for path, expected in PATHS.values():
        source = ParquetSource("s", path=path, timestamp_field="ts")
        assert source.files(repo) == [data / name for name in expected], path
        # An absolute path names the same files.
        absolute = ParquetSource("s", path=str(repo / path), timestamp_field="ts")
        assert absolute.files(repo) == source.files(repo), path


def test_each_path_form_is_applied_ingested_and_read(
    fs: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative source paths are from the repo, not the working folder
    assert fs.apply().version is not None
    results = {r.view: r for r in fs.ingest()}
    for view, (_, expected) in PATHS.items():
        assert results[view].files_added == len(expected), view
        assert results[view].rows_inserted == sum(FILES[name] for name in expected), view

    # A training set over every item sees each view's value only for the items of its files.
    total = sum(FILES.values())
    entities = pa.table(
        {
            "item_id": pa.array(range(total), pa.int64()),
            "event_timestamp": pa.array([START + timedelta(days=1)] * total, pa.timestamp("us", "UTC")),
        }
    )
    with fs.get_training_set(
        entities, [f"{view}:value" for view in PATHS], full_feature_names=True
    ) as ts:
        got = ts.to_arrow().to_pydict()
    first_id, expected_values = 0, {view: [None] * total for view in PATHS}
    for name, rows in FILES.items():
        for view, (_, files) in PATHS.items():
            if name in files:
                expected_values[view][first_id : first_id + rows] = [float(rows)] * rows
        first_id += rows
    for view in PATHS:
        assert got[f"{view}__value"] == expected_values[view], view
