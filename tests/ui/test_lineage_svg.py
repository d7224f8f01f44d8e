"""The lineage drawing's layout: features folded into views, columns by kind, text escaped."""

from __future__ import annotations

from typing import Any

from featurestore.ui.lineage_svg import COL_GAP, NODE_W, fold_features, layout, render


def graph() -> dict[str, Any]:
    nodes = [
        {"id": "file:/d/a.parquet", "kind": "source_file", "name": "/d/a.parquet", "status": "changed"},
        {"id": "run:ingest-1", "kind": "run", "name": "ingest-1", "run_type": "ingest", "status": "failed"},
        {"id": "view:v", "kind": "feature_view", "name": "v", "online": True},
        {"id": "feature:v:x", "kind": "feature", "name": "v:x"},
        {"id": "feature:v:y", "kind": "feature", "name": "v:y"},
        {"id": "service:s", "kind": "feature_service", "name": "s"},
        {"id": "training_set:t", "kind": "training_set", "name": "t<script>", "rows": 3},
        {"id": "run:materialize-2", "kind": "run", "name": "materialize-2", "run_type": "materialize"},
    ]
    edges = [
        ("file:/d/a.parquet", "run:ingest-1", "read (ab12)"),
        ("run:ingest-1", "view:v", "wrote"),
        ("view:v", "feature:v:x", "has"),
        ("view:v", "feature:v:y", "has"),
        ("feature:v:x", "service:s", "served by"),
        ("feature:v:y", "service:s", "served by"),
        ("feature:v:x", "training_set:t", "used by"),
        ("view:v", "run:materialize-2", "materialized by"),
    ]
    return {
        "root": "feature:v:x",
        "nodes": nodes,
        "edges": [{"from": a, "to": b, "relation": r} for a, b, r in edges],
    }


def test_features_fold_into_their_view() -> None:
    root, nodes, edges = fold_features(graph())
    assert root == "view:v"  # a feature's graph is its view's
    assert not any(n["kind"] == "feature" for n in nodes)
    assert ("view:v", "service:s", "2 features") in edges
    assert ("view:v", "training_set:t", "1 feature") in edges
    assert ("file:/d/a.parquet", "run:ingest-1", "read") in edges


def test_columns_by_kind_from_files_to_consumers() -> None:
    root, nodes, edges = fold_features(graph())
    boxes = {b.id: b for b in layout(root, nodes, edges)}
    assert [boxes[n].column for n in ("file:/d/a.parquet", "run:ingest-1", "view:v")] == [0, 1, 2]
    assert {boxes[n].column for n in ("service:s", "training_set:t", "run:materialize-2")} == {3}
    assert boxes["view:v"].x - boxes["run:ingest-1"].x == NODE_W + COL_GAP
    assert len({boxes[n].y for n in ("service:s", "training_set:t", "run:materialize-2")}) == 3  # no overlap


def test_the_drawing_links_every_node_and_escapes_names() -> None:
    svg = render(*fold_features(graph()), base="/ui")
    assert svg.count('<a href="/ui/lineage?node=') == 6  # every node but the folded features
    assert 'href="/ui/lineage?node=training_set%3At"' in svg
    assert "t&lt;script&gt;" in svg and "<script>" not in svg
    assert svg.count('stroke="#b42318"') == 2  # the failed run and the changed file stand out
