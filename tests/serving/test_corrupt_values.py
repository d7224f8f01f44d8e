"""One stored value that cannot be decoded answers CORRUPT for its entity; the rest is served.

Done to a real server and Redis: a value with a valid header and a body cut short (which
failed every request holding the entity, or was served misread) or with bytes to spare is
written over one entity's key, then the same lookup goes through every
surface -- in process, gRPC (the fast path's request and the general path's), the Python
client, HTTP -- and /metrics counts it. The original value is put back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis

import featurestore
from featurestore.online.codec import FORMAT_VERSION, with_header
from featurestore.serving.fastpath import fast_encoder
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import ServeProcess, open_store, wait_for
from tests.support.metrics import sample, scrape
from tests.support.redis import RedisServer

BROKEN = 0  # the index of the entity whose value is broken: driver 1001
KEY = "{rides:driver_id=1001}:driver_stats"
FIXED = ["driver_stats:conv_rate", "driver_stats:completed_trips_total"]
# (features, entities): the first is a request the gRPC fast path answers when all is well
# (every entity found, fixed-width features); the second takes the general path (driver 7
# does not exist) over two views, with a string feature.
REQUESTS = {
    "fast-path": (FIXED, {"driver_id": [1001, 1002]}),
    "general-path": (
        [*FIXED, "driver_stats:city", "customer_profile:lifetime_orders"],
        {"driver_id": [1001, 1002, 7], "customer_id": [5001, 5002, 5003]},
    ),
}
# How a value is broken, given it and where its variable-width features begin: cut short
# inside the last string, cut short inside the first length, longer than its features, or
# whole but in a value format this code does not know (written by a newer version).
CUTS: dict[str, Callable[[bytes, int], bytes]] = {
    "cut-in-a-string": lambda v, _: v[:-3],
    "cut-in-a-length": lambda v, prefix: v[: prefix + 2],
    "bytes-to-spare": lambda v, _: v + b"\x00\x01",
    "unknown-format": lambda v, _: with_header(v, format_version=FORMAT_VERSION + 1),
}


@pytest.fixture
def stored(serving_redis: RedisServer) -> Iterator[tuple[redis.Redis, bytes]]:
    """A client and driver 1001's stored driver_stats value, put back after the test."""
    client = redis.Redis.from_url(serving_redis.url)
    original = client.get(KEY)
    assert original is not None
    try:
        yield client, original
    finally:
        client.set(KEY, original, keepttl=True)
        client.close()


def expected(served_repo: Path, features: list[str], entities: dict[str, list[int]]) -> dict[str, list[str]]:
    """The statuses now, with driver 1001's driver_stats features turned CORRUPT."""
    statuses = open_store(served_repo).get_online_features(features, entities).statuses
    for ref in features:
        view, name = ref.split(":")
        if view == "driver_stats":
            assert statuses[name][BROKEN] == "PRESENT"  # what the value answers when whole
            statuses[name][BROKEN] = "CORRUPT"
    return statuses


def grpc_statuses(stub: Any, features: list[str], entities: dict[str, list[int]]) -> dict[str, list[str]]:
    request = pb.GetOnlineFeaturesRequest(features=features)
    for name, values in entities.items():
        request.entities[name].CopyFrom(pb.Values(int64_values=pb.Int64List(values=values)))
    response = stub.GetOnlineFeatures(request, timeout=10)
    return {c.name: [pb.FieldStatus.Name(s) for s in c.statuses] for c in response.features}


def fast_answer(repo: Path, client: redis.Redis, features: list[str], entities: dict[str, list[int]]) -> bool:
    """Whether the gRPC fast path answers this lookup from what Redis holds now."""
    registry = open_store(repo).online_registry()
    plan = registry.plan(tuple(features))
    n, columns = plan.entity_columns(entities)
    encoder = fast_encoder(plan)
    assert encoder is not None
    raw = client.mget(plan.keys(n, columns))
    return encoder.encode(n, raw, registry.version, time.time_ns() // 1000) is not None


def corrupt_counted(server: ServeProcess) -> float:
    samples = scrape(server.http_url)
    return sample(samples, "featurestore_online_lookups_total", view="driver_stats", status="CORRUPT")


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("path", list(REQUESTS))
def test_a_corrupt_value_answers_corrupt_for_its_entity_on_every_surface(
    stored: tuple[redis.Redis, bytes], server: ServeProcess, served_repo: Path, path: str, cut: str
) -> None:
    features, entities = REQUESTS[path]
    counted = corrupt_counted(server)
    want = expected(served_repo, features, entities)
    client, original = stored
    assert fast_answer(served_repo, client, features, entities) is (path == "fast-path")
    prefix = open_store(served_repo).online_registry().codecs["driver_stats"].prefix_size
    client.set(KEY, CUTS[cut](original, prefix), keepttl=True)
    assert fast_answer(served_repo, client, features, entities) is False  # it declines, not breaks
    # in process
    result = open_store(served_repo).get_online_features(features, entities)
    assert result.statuses == want
    assert all(result.to_dict()[name][BROKEN] is None for name in want if "CORRUPT" in want[name])
    # gRPC: a bare stub (the server picks the fast path for FIXED when it can), and the client
    with grpc.insecure_channel(server.target) as channel:
        assert grpc_statuses(pb_grpc.FeatureServingStub(channel), features, entities) == want
    with featurestore.Client(server.target) as client:
        response = client.get_online_features(features, entities)
    assert response.statuses == want
    assert all(response.columns[name][BROKEN] is None for name in want if "CORRUPT" in want[name])
    # HTTP
    body = httpx.post(
        f"{server.http_url}/v1/online-features", json={"features": features, "entities": entities}, timeout=10
    )
    assert body.status_code == 200, body.text
    assert {c["name"]: c["statuses"] for c in body.json()["features"]} == want
    # counted: one entity per request that reached the server (gRPC twice, HTTP once)
    wait_for(lambda: corrupt_counted(server) == counted + 3, 10, "CORRUPT counted in /metrics")
    assert "cannot be decoded" in server.stderr and "driver_id=1001" in server.stderr, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
