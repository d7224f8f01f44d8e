"""Materialize through the CLI, serve, and get the same answer in process, over gRPC and over HTTP."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import featurestore
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import (
    MAX_ENTITIES,
    SERVICE,
    SERVING,
    ServeProcess,
    from_client,
    from_http,
    from_in_process,
    health,
    open_store,
)
from tests.support.cli import run_cli
from tests.support.redis import RedisServer

# 100 drivers exist (1001-1100), 200 customers (5001-5200); the rest are unknown.
DRIVERS = [*range(1001, 1101), 1, 0, -7, 999_999_999_999, *range(2001, 2017)]
CUSTOMERS = list(range(5081, 5201))
random.Random(3).shuffle(CUSTOMERS)
CUSTOMERS[::10] = [9_000 + i for i in range(len(CUSTOMERS[::10]))]
ENTITIES = {"driver_id": DRIVERS, "customer_id": CUSTOMERS}
FEATURES = [
    "driver_stats:avg_daily_trips",
    "driver_stats:earnings_today",
    "driver_stats:city",
    "driver_stats:is_active",
    "customer_profile:lifetime_orders",
    "customer_profile:avg_order_value",
]


@pytest.mark.parametrize(
    ("features", "full_names"),
    [("trip_model", False), (FEATURES, True)],
    ids=["service", "feature-list"],
)
def test_grpc_http_and_in_process_agree(
    server: ServeProcess, served_repo: Path, features: str | list[str], full_names: bool
) -> None:
    assert len(DRIVERS) == len(CUSTOMERS) == 120 <= MAX_ENTITIES
    store = open_store(served_repo)
    local = store.get_online_features(features, ENTITIES, full_feature_names=full_names, with_run_ids=True)
    with featurestore.Client(server.target, timeout=5) as client:
        remote = client.get_online_features(
            features, ENTITIES, full_feature_names=full_names, include_run_ids=True
        )
    body = {"entities": ENTITIES, "full_feature_names": full_names, "include_run_ids": True}
    body["feature_service" if isinstance(features, str) else "features"] = features
    http = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=5)
    assert http.status_code == 200, http.text
    answer = http.json()

    expected = from_in_process(local)
    assert from_client(remote) == expected
    assert from_http(answer) == expected

    # The answer is about real data: known entities PRESENT, unknown ones NOT_FOUND.
    prefix = "driver_stats__" if full_names else ""
    trips = expected[f"{prefix}avg_daily_trips"]
    assert [s for _, s, _ in trips[100:]] == ["NOT_FOUND"] * 20
    assert all(v is None and t is None for v, _, t in trips[100:])
    present = [i for i, (_, s, _) in enumerate(trips) if s == "PRESENT"]
    assert len(present) >= 90
    assert all(isinstance(trips[i][0], int) and trips[i][2] is not None for i in present)
    orders = expected["customer_profile__lifetime_orders" if full_names else "lifetime_orders"]
    assert [s for _, s, _ in orders[::10]] == ["NOT_FOUND"] * 12
    assert sum(s == "PRESENT" for _, s, _ in orders) >= 100

    # Names, references and registry version agree; run ids (lineage) too.
    refs = [c.ref for c in local.features]
    assert [c["reference"] for c in answer["features"]] == refs
    assert list(remote.columns) == [c.name for c in local.features] == [c["name"] for c in answer["features"]]
    version = store.versions()[-1].version
    assert remote.registry_version == answer["registry_version"] == version
    assert remote.run_ids == local.run_ids == answer["runs"]
    assert set(remote.run_ids) == {"driver_stats", "customer_profile"}
    assert remote.run_ids["driver_stats"][0] is not None and remote.run_ids["driver_stats"][-1] is None
    # Each served run id traces to a succeeded materialization that read the view's source files.
    for view, runs in remote.run_ids.items():
        files = {f"file:{p.resolve()}" for p in store.get_feature_view(view).source.files(served_repo)}
        for run in {r for r in runs if r is not None}:
            graph = store.lineage(f"materialize-{run}")
            [root] = [n for n in graph["nodes"] if n["id"] == graph["root"] == f"run:materialize-{run}"]
            assert root["status"] == "succeeded" and root["writes_to"] == "redis"
            assert files <= {n["id"] for n in graph["nodes"] if n["kind"] == "source_file"}

    # Arrow types are the declared ones (Int32 stays int32, Float32 stays float32).
    declared = {f"{v.name}:{f.name}": f.dtype for v in store.list_feature_views() for f in v.features}
    table = remote.to_arrow()
    assert table.column_names == ["driver_id", "customer_id", *remote.columns]
    for column, ref in zip(remote.columns, refs, strict=True):
        assert table.schema.field(column).type == declared[ref].arrow, column
    assert {c["name"]: c["type"] for c in answer["features"]} == {
        c: declared[r].name for c, r in zip(remote.columns, refs, strict=True)
    }
    assert table.equals(local.to_arrow())
    if not full_names:
        assert table.schema.field("avg_daily_trips").type == "int32"
        assert table.schema.field("conv_rate").type == "float"
        assert table.schema.field("completed_trips_total").type == "int64"


def type_name(dtype: str) -> str:
    """A dtype's name as the proto's ValueType spells it: Float32 -> FLOAT32, List(String) -> STRING_LIST."""
    inner = dtype.removeprefix("List(").removesuffix(")")
    return inner.upper() + ("_LIST" if inner != dtype else "")


def test_list_features_over_grpc_and_http(server: ServeProcess, served_repo: Path) -> None:
    store = open_store(served_repo)
    views = [v for v in store.list_feature_views() if v.online]
    expected = sorted(
        (f"{v.name}:{f.name}", type_name(f.dtype.name), tuple(k.name for k in v.join_keys))
        for v in views for f in v.features
    )
    assert len(expected) == 25  # 16 plain features and driver_trips' 9 aggregations
    expected = sorted(  # and the on-demand features, keyed by the views they read
        expected
        + [
            (f"{v.name}:{f.name}", type_name(f.dtype.name), ("driver_id",))
            for v in store.list_on_demand_views()
            for f in v.features
        ]
    )
    assert len(expected) == 27

    with featurestore.Client(server.target) as client:
        listing = client.list_features()
    assert sorted(
        (f.reference, pb.ValueType.Name(f.type), tuple(f.join_keys)) for f in listing.features
    ) == expected
    assert {f.reference: f.ttl_seconds for f in listing.features}["driver_stats:city"] == 2 * 86400
    assert {f.reference: f.description for f in listing.features}["driver_stats:conv_rate"] == (
        "Share of offers accepted"
    )
    services = {s.name: s.feature_refs() for s in store.list_feature_services()}
    assert sorted(services) == ["dispatch_model", "pricing_model", "trip_model"]
    assert {s.name: list(s.features) for s in listing.services} == services
    assert listing.registry_version == store.versions()[-1].version

    answer = httpx.get(f"{server.http_url}/v1/features", timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert sorted(
        (f["reference"], type_name(f["type"]), tuple(f["join_keys"])) for f in body["features"]
    ) == expected
    assert body["services"] == services
    assert body["registry_version"] == listing.registry_version


def test_health_and_reflection(server: ServeProcess) -> None:
    assert health(server.target, "") == SERVING
    assert health(server.target, SERVICE) == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        health(server.target, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (reply,) = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for s in reply.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= services
        (reply,) = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=5
        )
        assert reply.file_descriptor_response.file_descriptor_proto  # clients can discover the API

    answer = httpx.get(f"{server.http_url}/healthz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"status": "SERVING", "registry_version": 1}


def test_get_command_in_process_and_through_the_server(
    server: ServeProcess, served_repo: Path, serving_redis: RedisServer
) -> None:
    store = open_store(served_repo)
    expected = store.get_online_features(
        ["driver_stats:city", "driver_stats:avg_daily_trips"], {"driver_id": [1001, 1002, 3]}
    ).to_dict()
    args = ["get", "--repo", str(served_repo), "--entity", "driver_id=1001,1002", "-e", "driver_id=3",
            "--features", "driver_stats:city,driver_stats:avg_daily_trips"]
    bad = ["get", "--repo", str(served_repo), "--entity", "driver_id", "--features", "driver_stats:city"]
    redis_here = {"FEATURESTORE_REDIS_URL": serving_redis.url}
    redis_nowhere = {"FEATURESTORE_REDIS_URL": "redis://127.0.0.1:1/0"}  # --server must not read Redis
    with ThreadPoolExecutor(3) as pool:
        local, remote, wrong = pool.map(
            lambda run: run_cli(*run[0], env=run[1]),
            [(args, redis_here), ([*args, "--server", server.target], redis_nowhere), (bad, redis_here)],
        )
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    for out in (local.stdout, remote.stdout):
        for i, driver in enumerate([1001, 1002, 3]):
            assert f"driver_id={driver}" in out
            for name in ("city", "avg_daily_trips"):
                value = expected[name][i]
                assert (value is None) == (driver == 3)
                if value is not None:
                    assert str(value) in out
        assert out.count("PRESENT") == 4
        assert out.count("NOT_FOUND") == 2
    assert local.stdout == remote.stdout

    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert wrong.stderr.strip().splitlines() == [
        "error: --entity 'driver_id': expected join_key=value[,value...]"
    ]


def test_aggregation_features_agree_over_every_transport(server: ServeProcess, served_repo: Path) -> None:
    """dispatch_model serves driver_trips' windowed aggregations: the server combines the
    tiles at the same hop end as the in-process lookup (retried if a 5-min hop ends between
    the three lookups); unknown drivers get count 0 with no event time, the rest null."""
    store = open_store(served_repo)
    drivers = {"driver_id": DRIVERS}
    for _ in range(5):
        before = time.time() // 300
        local = from_in_process(store.get_online_features("dispatch_model", drivers))
        with featurestore.Client(server.target, timeout=5) as client:
            remote = from_client(client.get_online_features("dispatch_model", drivers))
        body = {"entities": drivers, "feature_service": "dispatch_model"}
        http = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=5)
        assert http.status_code == 200, http.text
        if time.time() // 300 == before:
            break
    else:
        pytest.fail("a 5-min hop ended during every attempt")
    assert remote == local
    assert from_http(http.json()) == local
    # Real values: the known drivers have lifetime counts; the unknown ones are served empty.
    lifetime, last3 = local["trips_lifetime"], local["payment_last3_1d"]
    assert all(isinstance(v, int) and v > 0 and s == "PRESENT" and t for v, s, t in lifetime[:100])
    assert lifetime[100:] == [(0, "PRESENT", None)] * 20
    assert last3[100:] == [(None, "NULL_VALUE", None)] * 20
    assert any(v is not None and 1 <= len(v) <= 3 for v, _, _ in last3[:100])
    metrics = httpx.get(f"{server.http_url}/metrics", timeout=5).text
    assert 'view="driver_trips"' in metrics
