"""The lineage graph: upstream to source files, downstream to services, training sets and runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featurestore import FeatureStore
from tests.lineage.support import entity_frame, write_stats
from tests.support.cli import run_cli


def ids(graph: dict[str, Any], kind: str) -> list[str]:
    return sorted(n["id"] for n in graph["nodes"] if n["kind"] == kind)


def node(graph: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in graph["nodes"] if n["id"] == node_id)


def files(graph: dict[str, Any]) -> list[str]:
    return [Path(i.removeprefix("file:")).name for i in ids(graph, "source_file")]


def training_set(fs: FeatureStore, tmp_path: Path) -> str:
    with fs.get_training_set(entity_frame(tmp_path / "entities.parquet"), "svc") as ts:
        ts.to_parquet(tmp_path / "train.parquet")
        return str(ts.manifest["id"])


def test_a_view_upstream_to_files_and_runs_downstream_to_services_and_training_sets(
    store: FeatureStore, tmp_path: Path
) -> None:
    ts_id = training_set(store, tmp_path)
    graph = store.lineage("stats")
    assert graph["root"] == "view:stats"
    assert files(graph) == ["a.parquet", "b.parquet"]
    assert all(n.get("status") == "unchanged" for n in graph["nodes"] if n["kind"] == "source_file")
    assert ids(graph, "run") == ["run:ingest-1"]
    assert ids(graph, "feature") == ["feature:stats:score", "feature:stats:trips"]
    assert ids(graph, "feature_service") == ["service:svc"]
    assert ids(graph, "training_set") == [f"training_set:{ts_id}"]
    assert ids(graph, "feature_view") == ["view:stats"]  # zones is a sibling, not in stats' lineage
    a = f"file:{store.config.repo.resolve() / 'data' / 'stats' / 'a.parquet'}"
    assert {"from": a, "to": "view:stats", "relation": "ingested into"} in graph["edges"]


def test_a_feature_a_service_and_a_training_set_resolve(store: FeatureStore, tmp_path: Path) -> None:
    ts_id = training_set(store, tmp_path)
    feature = store.lineage("zones:label")
    assert feature["root"] == "feature:zones:label" and files(feature) == ["zones.parquet"]
    service = store.lineage("svc")
    assert service["root"] == "service:svc"
    assert files(service) == ["a.parquet", "b.parquet", "zones.parquet"]
    ts = store.lineage(ts_id)
    assert ts["root"] == f"training_set:{ts_id}" and files(ts) == ["a.parquet", "b.parquet", "zones.parquet"]
    assert node(ts, f"training_set:{ts_id}")["source_changes"] == []


def test_a_changed_source_file_shows_in_lineage(store: FeatureStore, tmp_path: Path) -> None:
    ts_id = training_set(store, tmp_path)
    b = store.config.repo.resolve() / "data" / "stats" / "b.parquet"
    write_stats(b, [0.5, 0.7], drivers=(2,))
    graph = store.lineage("stats")
    assert node(graph, f"file:{b}")["status"] == "changed"
    assert node(graph, f"file:{store.config.repo.resolve() / 'data' / 'stats' / 'a.parquet'}")["status"] == (
        "unchanged")
    [change] = node(graph, f"training_set:{ts_id}")["source_changes"]
    assert change == f"view 'stats': source file {b} changed"
    shown = run_cli("lineage", "stats", "--repo", str(store.config.repo))
    assert shown.returncode == 0, shown.stderr
    assert "b.parquet 2 rows changed" in shown.stdout and "sources changed" in shown.stdout
    # Ingested again, the new ingestion run read the new file; the training set stays stale.
    store.ingest()
    graph = store.lineage("stats")
    assert node(graph, f"file:{b}")["status"] == "unchanged"
    assert ids(graph, "run") == ["run:ingest-1", "run:ingest-3"]
    assert node(graph, f"training_set:{ts_id}")["source_changes"] == [change]


def test_an_online_value_traces_to_its_run_and_source_files(redis_url: str, store: FeatureStore) -> None:
    result = store.materialize()
    online = store.get_online_features(["stats:score"], {"driver_id": [2]}, with_run_ids=True)
    [run_id] = online.run_ids["stats"]
    assert run_id == result.run_id
    graph = store.lineage(f"materialize-{run_id}")
    run = node(graph, f"run:materialize-{run_id}")
    assert (run["status"], run["registry_version"], run["writes_to"]) == ("succeeded", 1, "redis")
    assert files(graph) == ["a.parquet", "b.parquet"]
    read = [e for e in graph["edges"] if e["to"] == f"run:materialize-{run_id}"]
    assert sorted(e["relation"].split(" ")[0] for e in read) == ["materialized", "read", "read"]
    # And from the view, the run is downstream.
    assert f"run:materialize-{run_id}" in ids(store.lineage("stats"), "run")


def test_cli_json_tree_and_unknown_names(store: FeatureStore, tmp_path: Path) -> None:
    repo = str(store.config.repo)
    training_set(store, tmp_path)
    as_json = run_cli("lineage", "svc", "--json", "--repo", repo)
    assert as_json.returncode == 0, as_json.stderr
    graph = json.loads(as_json.stdout)
    assert graph["root"] == "service:svc" and {"from", "to", "relation"} == set(graph["edges"][0])
    tree = run_cli("lineage", "ingest-1", "--repo", repo)
    assert tree.returncode == 0 and "run ingest-1 succeeded" in tree.stdout and "downstream" in tree.stdout
    assert "service svc" in tree.stdout and "training set" in tree.stdout
    missing = run_cli("lineage", "nope", "--repo", repo)
    assert missing.returncode == 1 and missing.stderr.startswith("error: nothing named 'nope'")


def test_runs_that_changed_nothing_are_counted_not_listed(store: FeatureStore) -> None:
    write_stats(store.config.repo / "data" / "stats" / "c.parquet", [0.7])
    store.ingest(["stats"])  # ingest-3 adds c.parquet; a and b stay as they were
    for _ in range(6):  # scheduled runs over untouched files: ingest-4 to ingest-9
        store.ingest(["stats"])
    repo = str(store.config.repo)

    graph = json.loads(run_cli("lineage", "stats", "--json", "--repo", repo).stdout)
    assert ids(graph, "run") == ["run:ingest-1", "run:ingest-3"]
    assert node(graph, "view:stats")["unchanged_runs"] == 6
    reads = {(Path(e["from"]).name, e["to"], e["relation"].split()[0]) for e in graph["edges"]
             if e["to"] == "run:ingest-3"}
    assert reads == {("a.parquet", "run:ingest-3", "kept"), ("b.parquet", "run:ingest-3", "kept"),
                     ("c.parquet", "run:ingest-3", "read")}

    tree = run_cli("lineage", "stats", "--repo", repo).stdout
    assert tree.splitlines()[0] == "view stats (online; 6 runs that changed nothing not listed)"
    assert "run ingest-9" not in tree

    asked = run_cli("lineage", "ingest-9", "--repo", repo)
    assert asked.stdout.splitlines()[0] == "run ingest-9 succeeded changed nothing (registry v1)"
    assert node(json.loads(run_cli("lineage", "ingest-9", "--json", "--repo", repo).stdout),
                "run:ingest-9")["changed"] is False
