"""What a client in another language needs: typed join keys and entities from ListFeatures, the
README's request as protobuf JSON, and the proto's go/java package options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import redis
from google.protobuf import json_format

import featurestore
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import ServeProcess, readme_grpcurl_body
from tests.support.redis import RedisServer
from tests.support.repos import make_store

DEFS = """
from featurestore import Entity, FeatureView, Field, Float64, Int32, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"], description="A driver")
zone = Entity("zone", join_keys=["zone_code"])
shift = Entity("shift", join_keys=["shift_no"])
drivers = FeatureView(
    "drivers", entities=[driver],
    source=ParquetSource("drivers_src", path="data/drivers.parquet", timestamp_field="ts"),
    schema=[Field("driver_id", Int64), Field("rating", Float64)])
zones = FeatureView(
    "zones", entities=[zone, shift],
    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
    schema=[Field("zone_code", String), Field("shift_no", Int32), Field("demand", Int64)])
"""
# the keys a generic client is asked about, as text (as a command line or a config file has them)
KEYS = {"driver_id": ["7", "8"], "zone_code": ["007", "x"], "shift_no": ["1", "2"]}


def _store(repo: Path) -> featurestore.FeatureStore:
    ts = datetime.now(UTC) - timedelta(hours=1)
    stamps = pa.array([ts, ts], pa.timestamp("us", tz="UTC"))
    data = {
        "drivers.parquet": pa.table({"driver_id": pa.array([7, 8], pa.int64()), "ts": stamps,
                                     "rating": [4.5, 3.0]}),
        "zones.parquet": pa.table({"zone_code": ["007", "x"], "shift_no": pa.array([1, 2], pa.int32()),
                                   "ts": stamps, "demand": pa.array([10, 20], pa.int64())}),
    }
    return make_store(repo, DEFS, data, project="polyglot")


def _generic_request(listing: pb.ListFeaturesResponse) -> pb.GetOnlineFeaturesRequest:
    """A request built as a client knowing nothing but ListFeatures would build it."""
    request = pb.GetOnlineFeaturesRequest(features=[f.reference for f in listing.features])
    for info in listing.features:
        assert [k.name for k in info.typed_join_keys] == list(info.join_keys)
        for key in info.typed_join_keys:
            values = request.entities[key.name]
            if key.type in (pb.INT32, pb.INT64):
                values.int64_values.values.extend([int(v) for v in KEYS[key.name]])
            else:
                assert key.type == pb.STRING
                values.string_values.values.extend(KEYS[key.name])
    return request


def test_a_generic_client_builds_its_request_from_list_features(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    fs = _store(tmp_path / "repo")
    fs.materialize()
    server = ServeProcess(fs.config.repo, redis_server.url)
    try:
        server.start()
        with featurestore.Client(server.target, timeout=5) as client:
            listing = client.list_features()
            answer = client.stub.GetOnlineFeatures(_generic_request(listing), timeout=5)
        http = httpx.get(f"{server.http_url}/v1/features", timeout=5).json()
    finally:
        server.stop()
    typed = {f.reference: [(k.name, pb.ValueType.Name(k.type)) for k in f.typed_join_keys]
             for f in listing.features}
    assert typed == {
        "drivers:rating": [("driver_id", "INT64")],
        "zones:demand": [("zone_code", "STRING"), ("shift_no", "INT32")],
    }
    assert {f.reference: list(f.entities) for f in listing.features} == {
        "drivers:rating": ["driver"],
        "zones:demand": ["zone", "shift"],
    }
    assert [(e.name, list(e.join_keys), e.description) for e in listing.entities] == [
        ("driver", ["driver_id"], "A driver"),
        ("shift", ["shift_no"], ""),
        ("zone", ["zone_code"], ""),
    ]
    columns = {c.name: c for c in answer.features}
    assert list(columns["rating"].values.double_values.values) == [4.5, 3.0]
    assert list(columns["demand"].values.int64_values.values) == [10, 20]  # "007" stayed a string
    assert all(list(c.statuses) == [pb.PRESENT, pb.PRESENT] for c in answer.features)

    # HTTP says the same
    assert {f["reference"]: f["join_key_types"] for f in http["features"]} == {
        "drivers:rating": {"driver_id": "Int64"},
        "zones:demand": {"zone_code": "String", "shift_no": "Int32"},
    }
    assert {f["reference"]: f["entities"] for f in http["features"]} == {
        "drivers:rating": ["driver"],
        "zones:demand": ["zone", "shift"],
    }
    assert http["entities"] == {
        "driver": {"join_keys": ["driver_id"], "description": "A driver"},
        "shift": {"join_keys": ["shift_no"], "description": ""},
        "zone": {"join_keys": ["zone_code"], "description": ""},
    }


def test_the_readme_grpcurl_request_is_valid_protobuf_json(server: ServeProcess) -> None:
    """The JSON body of README's grpcurl example, parsed as grpcurl does, gets an answer."""
    request = json_format.Parse(
        readme_grpcurl_body("GetOnlineFeatures", '"driver_stats:conv_rate"'), pb.GetOnlineFeaturesRequest()
    )
    with featurestore.Client(server.target, timeout=5) as client:
        answer = client.stub.GetOnlineFeatures(request, timeout=5)
    assert [pb.FieldStatus.Name(s) for s in answer.features[0].statuses] == ["PRESENT", "NOT_FOUND"]
    # absent values are zero-filled: only the status tells a NOT_FOUND from a real zero
    out = json_format.MessageToDict(answer)
    assert out["features"][0]["values"]["floatValues"]["values"][1] == 0
    assert out["features"][0]["eventTimestamps"][1] == "0"  # int64 in JSON: a string


def test_the_proto_names_go_and_java_packages() -> None:
    # read from the generated descriptor, which a test keeps equal to what proto/ generates
    options = pb.DESCRIPTOR.GetOptions()
    assert options.go_package == "featurestore/serving/v1;servingv1"
    assert options.java_package == "featurestore.serving.v1"
    assert options.java_multiple_files and options.java_outer_classname == "ServingProto"
