"""A null inside a list feature reaches every serving surface as the training set has it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import redis

import featurestore
from featurestore.serving.v1 import serving_pb2 as pb
from tests.online.helpers import make_store
from tests.serving.support import ServeProcess, from_client, from_http, from_in_process
from tests.support.redis import RedisServer

DEFS = """
from featurestore import Entity, FeatureView, Field, Float32, Float64, Int32, Int64, List, ParquetSource

thing = Entity("thing", join_keys=["id"])
lists = FeatureView(
    "lists", entities=[thing],
    source=ParquetSource("lists_src", path="data/lists.parquet", timestamp_field="ts"),
    schema=[Field("l32", List(Int32)), Field("l64", List(Int64)), Field("lf32", List(Float32)),
            Field("lf64", List(Float64))])
"""
TYPES = {
    "l32": pa.list_(pa.int32()),
    "l64": pa.list_(pa.int64()),
    "lf32": pa.list_(pa.float32()),
    "lf64": pa.list_(pa.float64()),
}
# per entity: nulls inside, no nulls, empty, a null list, only nulls, a long list (2-byte bitmap)
ROWS: list[dict[str, Any]] = [
    {"l32": [1, None, 3], "l64": [None, 2**40], "lf32": [0.5, None], "lf64": [None, -1.25, None]},
    {"l32": [4], "l64": [5, 6], "lf32": [1.5], "lf64": [2.5, 3.5]},
    {"l32": [], "l64": [], "lf32": [], "lf64": []},
    {"l32": None, "l64": None, "lf32": None, "lf64": None},
    {"l32": [None], "l64": [None, None], "lf32": [None] * 3, "lf64": [None] * 9},
    {
        "l32": [None if i % 3 == 0 else i for i in range(11)],
        "l64": [-(2**63), None, 2**63 - 1],
        "lf32": [float(i) if i != 8 else None for i in range(10)],
        "lf64": [0.0] * 8 + [None],
    },
]
IDS = list(range(1, len(ROWS) + 1))
FEATURES = [f"lists:{name}" for name in TYPES]


def _store(repo: Path) -> featurestore.FeatureStore:
    ts = datetime.now(UTC) - timedelta(hours=1)
    table = pa.table(
        {
            "id": pa.array(IDS, pa.int64()),
            "ts": pa.array([ts] * len(IDS), pa.timestamp("us", tz="UTC")),
            **{name: pa.array([r[name] for r in ROWS], t) for name, t in TYPES.items()},
        }
    )
    return make_store(repo, DEFS, {"lists.parquet": table}, project="listnulls")


def test_every_surface_serves_nulls_inside_lists_as_the_training_set(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    fs = _store(tmp_path / "repo")
    fs.materialize()
    entity = pa.table(
        {"id": pa.array(IDS, pa.int64()), "event_timestamp": pa.array([datetime.now(UTC)] * len(IDS))}
    )
    with fs.get_training_set(entity, FEATURES) as ts:
        offline = ts.to_arrow().sort_by("id").to_pydict()
    assert {name: offline[name] for name in TYPES} == {name: [r[name] for r in ROWS] for name in TYPES}

    entities = {"id": [*IDS, 99]}  # and one entity never materialized
    expected = {name: [*offline[name], None] for name in TYPES}
    local = fs.get_online_features(FEATURES, entities)
    assert {name: local.to_dict()[name] for name in TYPES} == expected
    assert local.to_arrow().select(list(TYPES)).equals(
        pa.table({name: pa.array(values, TYPES[name]) for name, values in expected.items()})
    )

    server = ServeProcess(fs.config.repo, redis_server.url)
    try:
        server.start()
        with featurestore.Client(server.target, timeout=5) as client:
            remote = client.get_online_features(FEATURES, entities)
            ids = pb.Values(int64_values=pb.Int64List(values=entities["id"]))
            request = pb.GetOnlineFeaturesRequest(features=FEATURES, entities={"id": ids})
            raw = client.stub.GetOnlineFeatures(request, timeout=5)
        body = {"features": FEATURES, "entities": entities}
        http = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=5)
    finally:
        server.stop()
    assert {name: remote.columns[name] for name in TYPES} == expected
    assert remote.to_arrow().select(list(TYPES)).equals(local.to_arrow().select(list(TYPES)))
    assert http.status_code == 200, http.text
    assert {col["name"]: col["values"] for col in http.json()["features"]} == expected
    in_process = from_in_process(local)
    assert from_client(remote) == in_process
    assert from_http(http.json()) == in_process

    # On the wire a null item is the zero value plus its position: a client that predates
    # null_positions reads the zero it always did.
    first = raw.features[0].values.list_values.values[0]
    assert list(first.int32_values.values) == [1, 0, 3] and list(first.null_positions) == [1]
    no_nulls = raw.features[0].values.list_values.values[1]
    assert no_nulls == pb.Values(int32_values=pb.Int32List(values=[4]))
