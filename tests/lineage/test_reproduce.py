"""Training sets: recorded with an id and manifest, rebuilt byte for byte, refused when a source changed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.errors import NotFoundError, SourceError
from featurestore.fingerprints import file_fingerprint
from featurestore.offline.training_set import MANIFEST_KEY
from tests.lineage.support import at, entity_frame, write_stats
from tests.support.cli import run_cli


def build(fs: FeatureStore, entities: object, out: Path, features: object = "svc") -> dict[str, object]:
    with fs.get_training_set(entities, features) as ts:  # type: ignore[arg-type]
        ts.to_parquet(out)
        return ts.manifest


def test_to_parquet_records_the_training_set(store: FeatureStore, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    manifest = build(store, entity_frame(tmp_path / "entities.parquet"), out)
    embedded = json.loads(pq.read_metadata(out).metadata[MANIFEST_KEY.encode()])
    ts_id = str(manifest["id"])
    assert embedded["id"] == ts_id and embedded["rows"] == 4
    assert embedded["entity_fingerprint"] and embedded["registry_version"] == 1
    assert manifest["output_fingerprint"] == file_fingerprint(out)
    [record] = store.training_sets()
    assert record["id"] == ts_id and record["manifest"] == embedded
    assert record["output"] == {"path": str(out.resolve()), "fingerprint": file_fingerprint(out),
                                "bytes": out.stat().st_size}
    copy = store.config.store_dir / "training_sets" / ts_id / "entities.parquet"
    assert pq.read_table(copy).to_pylist() == pq.read_table(tmp_path / "entities.parquet").to_pylist()
    # The same request over the same data is the same training set.
    again = build(store, entity_frame(tmp_path / "again.parquet"), tmp_path / "again.out.parquet")
    assert again["id"] == ts_id


@pytest.mark.parametrize("form", ["parquet", "pandas", "pandas-ns", "arrow", "sql"])
def test_an_unchanged_training_set_is_reproduced_byte_for_byte(
    store: FeatureStore, tmp_path: Path, form: str
) -> None:
    path = entity_frame(tmp_path / "entities.parquet")
    entities: object = {
        "parquet": path,
        "pandas": pd.read_parquet(path),
        "pandas-ns": pd.DataFrame({"driver_id": [1, 2], "event_timestamp": pd.to_datetime([at(60), at(1)]),
                                   "target": [0.5, None]}),
        "arrow": pq.read_table(path),
        "sql": "SELECT driver_id, __event_ts AS event_timestamp FROM lin.offline_stats WHERE trips < 3",
    }[form]
    out = tmp_path / "train.parquet"
    ts_id = str(build(store, entities, out, ["stats:score", "stats:trips", "zones:label"])["id"])
    store.ingest()  # nothing changed: a no-op run
    again = tmp_path / "again.parquet"
    result = store.reproduce_training_set(ts_id, again)
    assert result.identical and result.changes == []
    assert again.read_bytes() == out.read_bytes()


def test_a_changed_source_is_named_and_refused_unless_forced(store: FeatureStore, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    ts_id = str(build(store, entity_frame(tmp_path / "entities.parquet"), out)["id"])
    changed = store.config.repo / "data" / "stats" / "b.parquet"
    write_stats(changed, [0.5, 0.9], drivers=(2,))
    with pytest.raises(SourceError, match=f"source file {changed} changed"):
        store.reproduce_training_set(ts_id, tmp_path / "again.parquet")
    assert not (tmp_path / "again.parquet").exists()
    # Ingested, the new data is what a forced rebuild reads: it says it differs.
    store.ingest()
    result = store.reproduce_training_set(ts_id, tmp_path / "forced.parquet", force=True)
    assert not result.identical and any("b.parquet changed" in c for c in result.changes)
    embedded = json.loads(pq.read_metadata(tmp_path / "forced.parquet").metadata[MANIFEST_KEY.encode()])
    assert embedded["reproduces"] == ts_id


def test_a_restored_file_not_yet_ingested_is_refused(store: FeatureStore, tmp_path: Path) -> None:
    ts_id = str(build(store, entity_frame(tmp_path / "entities.parquet"), tmp_path / "train.parquet")["id"])
    b = store.config.repo / "data" / "stats" / "b.parquet"
    original = b.read_bytes()
    write_stats(b, [0.5, 0.9], drivers=(2,))
    store.ingest()
    b.write_bytes(original)  # the file is back, the store still holds the changed rows
    with pytest.raises(SourceError, match="data ingested in the store differs"):
        store.reproduce_training_set(ts_id, tmp_path / "again.parquet")
    store.ingest()
    assert store.reproduce_training_set(ts_id, tmp_path / "again.parquet").identical


def test_removed_and_added_files_are_named(store: FeatureStore, tmp_path: Path) -> None:
    ts_id = str(build(store, entity_frame(tmp_path / "entities.parquet"), tmp_path / "train.parquet")["id"])
    stats = store.config.repo / "data" / "stats"
    (stats / "b.parquet").unlink()
    write_stats(stats / "c.parquet", [0.7])
    with pytest.raises(SourceError, match=r"b.parquet was removed \(and 1 more\)"):
        store.reproduce_training_set(ts_id, tmp_path / "again.parquet")


def test_unknown_training_set(store: FeatureStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no training set 'nope'"):
        store.reproduce_training_set("nope", tmp_path / "x.parquet")


def test_cli_reproduces_and_refuses(store: FeatureStore, tmp_path: Path) -> None:
    repo = str(store.config.repo)
    entities = entity_frame(tmp_path / "entities.parquet")
    out = tmp_path / "train.parquet"
    made = run_cli("training-set", "--repo", repo, "--entities", str(entities), "--service", "svc",
                   "--out", str(out))
    assert made.returncode == 0, made.stderr
    ts_id = json.loads(pq.read_metadata(out).metadata[MANIFEST_KEY.encode()])["id"]
    assert f"training set {ts_id}" in made.stdout
    reproduce = ("training-set", "reproduce", ts_id, "--repo", repo, "--out")
    same = run_cli(*reproduce, str(tmp_path / "again.parquet"))
    assert same.returncode == 0 and "identical" in same.stdout, same.stdout + same.stderr
    assert (tmp_path / "again.parquet").read_bytes() == out.read_bytes()
    # The earlier spelling still works (hidden from --help).
    alias = run_cli("training-set-reproduce", ts_id, "--repo", repo, "--out", str(tmp_path / "alias.parquet"))
    assert alias.returncode == 0 and (tmp_path / "alias.parquet").read_bytes() == out.read_bytes()
    # Without a subcommand, training-set still needs its inputs: one line naming them.
    missing = run_cli("training-set", "--repo", repo, "--service", "svc")
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "error: training-set needs --out FILE and one of --entities FILE, --feature-log DIR")
    write_stats(store.config.repo / "data" / "stats" / "a.parquet", [0.1, 0.2, 0.3, 0.45])
    refused = run_cli(*reproduce, str(tmp_path / "x.parquet"))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: training set") and "a.parquet changed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    forced = run_cli(*reproduce, str(tmp_path / "x.parquet"), "--force")
    # Not ingested since: the store still holds the old rows, so the rebuild is the same bytes.
    assert forced.returncode == 0 and "a.parquet changed" in forced.stdout, forced.stdout + forced.stderr
    _ = at
