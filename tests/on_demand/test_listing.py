"""On-demand features appear like any feature: in training set records (manifest, statistics),
in the lineage graph (upstream: the features and request fields they read), in listings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore import FeatureStore
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import ServeProcess


def test_a_training_set_records_statistics_and_lineage_of_on_demand_features(
    od_repo: Path, tmp_path: Path
) -> None:
    fs = FeatureStore(od_repo)
    frame = pa.table(
        {
            "driver_id": pa.array([0, 0, 12345], pa.int64()),
            "event_timestamp": pa.array([datetime.now(UTC)] * 3, pa.timestamp("us", tz="UTC")),
            "x": pa.array([1.5, None, 2.0]),
            "flag": pa.array([True, False, None]),
        }
    )
    with fs.get_training_set(frame, "pricing") as ts:
        out = ts.to_parquet(tmp_path / "pricing.parquet")
        manifest = ts.manifest
    table = pq.read_table(out)
    assert table.column_names == [
        "driver_id", "event_timestamp", "x", "flag", "ab_x", "label", "a_or_default", "picked", "x_int", "b",
    ]  # fmt: skip: the service's order, as lookups answer
    assert table.column("a_or_default").to_pylist() == [1.0, 1.0, -1.0]  # the seed row's a; none for 12345
    assert manifest["features"] == [
        "combo:ab_x", "combo:label", "combo:a_or_default", "chooser:picked", "chooser:x_int", "stats:b",
    ]  # fmt: skip
    assert set(manifest["on_demand_views"]) == {"combo", "chooser"}
    online = fs.get_online_features("pricing", {"driver_id": [0]}, request_data={"x": [1.0], "flag": [True]})
    assert [c.name for c in online.features] == manifest["columns"]  # the same columns, the same order

    [record] = [r for r in fs.training_sets() if r["id"] == manifest["id"]]
    stats = record["statistics"]
    assert {"ab_x", "label", "a_or_default", "picked", "x_int", "b"} <= set(stats)
    assert not any(name.startswith("__") for name in stats)  # inputs nobody asked for are not there
    assert stats["a_or_default"]["nulls"] == 0 and stats["picked"]["nulls"] == 2  # x null, flag null

    # rebuilt from its record, it is the same file (the functions' code unchanged)
    again = fs.reproduce_training_set(manifest["id"], tmp_path / "again.parquet")
    assert again.identical, again

    graph = fs.lineage("combo")
    ids = {n["id"] for n in graph["nodes"]}
    edges = {(e["from"], e["to"], e["relation"]) for e in graph["edges"]}
    assert ("feature:stats:a", "view:combo", "read by") in edges
    assert ("request_source:req", "view:combo", "read by") in edges
    assert ("view:combo", "feature:combo:ab_x", "computes") in edges
    assert ("feature:combo:ab_x", "service:pricing", "served by") in edges
    assert f"training_set:{manifest['id']}" in ids
    assert {n["id"]: n["kind"] for n in graph["nodes"]}["view:combo"] == "on_demand_view"
    fs.close()


def test_listings_name_on_demand_features_with_their_request_fields(od_server: ServeProcess) -> None:
    with grpc.insecure_channel(od_server.target) as channel:
        listing = pb_grpc.FeatureServingStub(channel).ListFeatures(pb.ListFeaturesRequest(), timeout=10)
    infos = {f.reference: f for f in listing.features}
    picked = infos["chooser:picked"]
    assert (picked.view, picked.type, list(picked.join_keys)) == ("chooser", pb.FLOAT64, ["driver_id"])
    assert [(r.name, r.type) for r in picked.request_fields] == [("x", pb.FLOAT64), ("flag", pb.BOOL)]
    assert not infos["stats:a"].request_fields
    assert {s.name: list(s.features) for s in listing.services}["pricing"][0] == "combo:ab_x"

    body = httpx.get(f"{od_server.http_url}/v1/features", timeout=10).json()
    by_ref = {f["reference"]: f for f in body["features"]}
    assert by_ref["combo:label"]["request_fields"] == {"x": "Float64", "flag": "Bool"}
    assert by_ref["combo:label"]["type"] == "String" and by_ref["combo:label"]["on_demand"] is True
