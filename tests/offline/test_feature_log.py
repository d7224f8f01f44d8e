"""Log and wait: requests served with complete logging through a real server become a training
set whose served features are exactly what the clients received, and whose other features
are computed point in time at the request's time."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import redis

import featurestore
from featurestore import FeatureLog
from featurestore.errors import InvalidRequestError
from featurestore.offline.request_log_format import SCHEMA
from featurestore.online.registry_holder import RegistryHolder
from featurestore.serving.request_log import RequestLog
from tests.serving.support import ServeProcess, open_store
from tests.support.cli import run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.repos import materialized_example_repo

GRPC_ENTITIES = {"driver_id": [1001, 1002, 7], "customer_id": [5001, 9, 5003]}
HTTP_ENTITIES = {"driver_id": [1003, 1004]}
SERVED = ["driver_stats:conv_rate", "driver_stats:city", "customer_profile:lifetime_orders"]
OFFLINE = "driver_trips:trips_24h"  # never served: computed at each request's time
ROWS = 2 * 3 + 2 * 3 + 2 * 2  # (request, entity) pairs served: trip_model, conv_rate alone, HTTP


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("feature-log-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, redis_server: RedisServer) -> Path:
    return materialized_example_repo(
        tmp_path_factory.mktemp("feature-log") / "repo", fresh_data, redis_server.url
    )


@pytest.fixture(scope="module")
def served(repo: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Requests through `featurestore serve` logging every one, and what the clients received
    (keyed by request id)."""
    log = tmp_path_factory.mktemp("feature-log-files") / "log"
    server = ServeProcess(
        repo, redis_server.url, "--request-log", str(log), "--request-log-sample", "1"
    ).start()
    received: dict[str, Any] = {}
    # Drivers whose conv_rate is present and not null: a request for them takes the gRPC fast
    # path (fastpath.py), which logs the Redis values undecoded.
    local = open_store(repo).get_online_features([SERVED[0]], {"driver_id": list(range(1001, 1031))})
    fast = [
        d
        for d, s, v in zip(
            local.entities["driver_id"],
            local.statuses["conv_rate"],
            local.to_dict()["conv_rate"],
            strict=True,
        )
        if s == "PRESENT" and v is not None
    ][:3]
    assert len(fast) == 3
    received["fast-entities"] = fast
    try:
        requests: list[tuple[str, Any, dict[str, list[int]], bool]] = [
            ("grpc-0", "trip_model", GRPC_ENTITIES, False),  # driver 7 unknown: the general path
            ("grpc-1", "trip_model", GRPC_ENTITIES, True),
            ("grpc-fast", [SERVED[0]], {"driver_id": fast}, False),
            ("grpc-fast-runs", [SERVED[0]], {"driver_id": fast}, True),  # run ids: the general path
        ]
        for request_id, features, entities, run_ids in requests:
            with featurestore.Client(server.target, timeout=10, metadata=[("x-request-id", request_id)]) as c:
                received[request_id] = c.get_online_features(features, entities, include_run_ids=run_ids)
        for request_id in ("http-0", "not a valid id"):
            body = {"features": SERVED[:2], "entities": HTTP_ENTITIES}
            r = httpx.post(
                f"{server.http_url}/v1/online-features",
                json=body,
                headers={"x-request-id": request_id},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            received[request_id] = r.json()
    finally:
        assert server.stop() == 0  # SIGTERM: the log is written before the process ends
    return {"log": log, "received": received}


def _by_request(table: pa.Table) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["request_id"], r["entity_index"]): r for r in table.to_pylist()}


def test_a_training_set_from_the_log_holds_what_the_clients_received(
    repo: Path, served: dict[str, Any], tmp_path: Path
) -> None:
    store = open_store(repo)
    with store.get_training_set(FeatureLog(served["log"]), [*SERVED, OFFLINE]) as ts:
        table = ts.to_arrow()
        out = ts.to_parquet(tmp_path / "logged.parquet")
        manifest = ts.manifest
    received = served["received"]
    generated = [rid for rid, _ in _by_request(table) if rid not in received]
    assert len(set(generated)) == 1 and re.fullmatch(r"\d+-\d+-\d+", generated[0])  # the bad id replaced
    assert table.num_rows == ROWS  # one row per (request, entity) logged
    rows = _by_request(table)

    for rid in ("grpc-0", "grpc-1", "grpc-fast", "grpc-fast-runs"):  # the Client's decoded answer
        answer = received[rid]
        values, statuses = answer.to_dict(), answer.statuses
        assert sorted(e for r, e in rows if r == rid) == list(range(len(answer.entities["driver_id"])))
        for e, driver in enumerate(answer.entities["driver_id"]):
            row = rows[(rid, e)]
            assert row["driver_id"] == driver
            for name in ("conv_rate", "city", "lifetime_orders"):
                if name in values:
                    assert row[name] == values[name][e], (rid, e, name)
                    assert row[f"{name}__status"] == statuses[name][e], (rid, e, name)
    assert [rows[("grpc-0", e)]["customer_id"] for e in range(3)] == GRPC_ENTITIES["customer_id"]
    assert set(received["grpc-fast"].statuses["conv_rate"]) == {"PRESENT"}  # so: the fast path
    assert rows[("grpc-0", 2)]["conv_rate__status"] == "NOT_FOUND"  # driver 7 is unknown
    for rid in ("http-0", generated[0]):  # HTTP: the JSON body received
        features = {
            f["name"]: f for f in received["http-0" if rid == "http-0" else "not a valid id"]["features"]
        }
        for e in range(2):
            row = rows[(rid, e)]
            assert row["driver_id"] == HTTP_ENTITIES["driver_id"][e] and row["customer_id"] is None
            for name in ("conv_rate", "city"):
                assert row[name] == features[name]["values"][e]
                assert row[f"{name}__status"] == features[name]["statuses"][e]
            # Not asked for in that request: no value, no status (not a NOT_FOUND).
            assert row["lifetime_orders"] is None and row["lifetime_orders__status"] is None

    # Not in the log: point in time at request_time, exactly as a plain entity frame gets it.
    frame = table.select(["driver_id", "request_time"])
    with store.get_training_set(frame, [OFFLINE], event_timestamp_column="request_time") as plain:
        assert table.column("trips_24h").equals(plain.to_arrow().column("trips_24h"))

    # The manifest names the log files read and the runs behind the served values.
    logged = manifest["feature_log"]
    assert sorted(f["path"] for f in logged["files"]) == sorted(
        p.name for p in served["log"].glob("*.parquet")
    )
    assert logged["served"] == SERVED and manifest["features"] == [OFFLINE]
    assert logged["dropped_requests"] == 0 and logged["rows"] == table.num_rows
    runs = received["grpc-1"].run_ids  # asked for: the reference for what the log recorded
    assert logged["runs"]["driver_stats"] == sorted({r for r in runs["driver_stats"] if r is not None})
    assert manifest["entities"].startswith("feature log ")
    graph = store.lineage(manifest["id"])
    log_nodes = [n for n in graph["nodes"] if n["kind"] == "feature_log_file"]
    assert len(log_nodes) == len(logged["files"])
    # Reproducible from the recorded copy of the logged rows.
    result = store.reproduce_training_set(manifest["id"], tmp_path / "again.parquet")
    assert result.identical, result
    assert out.exists()


def test_every_logged_value_names_its_run_on_both_paths(served: dict[str, Any]) -> None:
    from featurestore.monitoring.skew import read_log

    rows = read_log(served["log"])[0].to_pylist()
    # The references: the same requests asked for run ids (answered by the general path).
    reference = {"grpc-0": "grpc-1", "grpc-1": "grpc-1", "grpc-fast": "grpc-fast-runs"}
    checked = 0
    for r in rows:
        if r["request_id"] in reference and r["status"] == "PRESENT":
            runs = served["received"][reference[r["request_id"]]].run_ids
            assert r["run_id"] == runs[r["feature"].split(":")[0]][r["entity_index"]], r
            checked += 1
    assert checked >= 3 + 2 * 3 * 2  # the fast path's three and most of the others


def test_a_time_window_and_only_unlogged_features(repo: Path, served: dict[str, Any]) -> None:
    store = open_store(repo)
    with store.get_training_set(FeatureLog(served["log"]), SERVED) as ts:
        rows = _by_request(ts.to_arrow())
    times = sorted({r["request_time"] for r in rows.values()})
    with store.get_training_set(FeatureLog(served["log"], start=times[1]), SERVED) as ts:
        later = ts.to_arrow()
    assert later.num_rows == sum(1 for r in rows.values() if r["request_time"] >= times[1])
    with store.get_training_set(
        FeatureLog(served["log"]), [SERVED[0], OFFLINE], full_feature_names=True
    ) as ts:
        names = ts.to_arrow().column_names
    assert names[-3:] == [
        "driver_stats__conv_rate",
        "driver_stats__conv_rate__status",
        "driver_trips__trips_24h",
    ]
    with pytest.raises(InvalidRequestError, match="holds no served values of"):
        store.get_training_set(FeatureLog(served["log"]), [OFFLINE])


def test_the_cli_builds_a_training_set_from_a_feature_log(
    repo: Path, served: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cli.parquet"
    result = run_cli(
        "training-set",
        "--repo",
        str(repo),
        "--feature-log",
        str(served["log"]),
        "--features",
        ",".join(SERVED),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    table = pa.parquet.read_table(out)
    assert table.num_rows == ROWS and "conv_rate__status" in table.column_names


def test_old_log_files_without_the_new_columns_still_read(
    repo: Path, served: dict[str, Any], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    first = [n for n in SCHEMA.names if n not in ("run_id", "request_json")]  # the first format
    table = pa.concat_tables([pq.read_table(f) for f in sorted(served["log"].glob("*.parquet"))])
    half = table.num_rows // 2
    (tmp_path / "old").mkdir()
    pq.write_table(table.select(first), tmp_path / "old" / "a.parquet")
    (tmp_path / "mixed").mkdir()  # an old file beside a new one, a request split across them
    pq.write_table(table.slice(0, half).select(first), tmp_path / "mixed" / "a.parquet")
    pq.write_table(table.slice(half), tmp_path / "mixed" / "b.parquet")
    store = open_store(repo)
    with store.get_training_set(FeatureLog(served["log"]), SERVED) as ts:
        expected = ts.to_arrow()
    for folder in ("old", "mixed"):
        with store.get_training_set(FeatureLog(tmp_path / folder), SERVED) as ts:
            assert ts.to_arrow().equals(expected), folder
            runs = ts.manifest["feature_log"]["runs"]
        assert (runs == {}) == (folder == "old")  # no run ids in the first format
        assert store.skew(tmp_path / folder).skewed == []


def test_request_data_becomes_columns_of_the_training_set(
    repo: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Request data (on-demand features' inputs) as RequestLog is handed it: one column each."""
    store = open_store(repo)
    plan = RegistryHolder(store.config, 1000).current.plan(("driver_stats:conv_rate",))
    n, columns = plan.entity_columns({"driver_id": [1001, 1002]})
    client = redis.Redis.from_url(redis_server.url)
    try:
        raw = client.mget(plan.keys(n, columns))
    finally:
        client.close()
    answer = plan.assemble(n, columns, raw)
    log = RequestLog(tmp_path / "log", 1.0)
    data = {"trip_km": [3.5, 12.0], "rush_hour": [True, False]}
    log.offer("http", time.time(), columns, answer, sampled=True, plan=plan, raw=raw, request_data=data)
    log.close()
    with store.get_training_set(FeatureLog(tmp_path / "log"), ["driver_stats:conv_rate"]) as ts:
        table = ts.to_arrow()
    assert table.column("trip_km").to_pylist() == data["trip_km"]
    assert table.column("rush_hour").to_pylist() == data["rush_hour"]
    assert table.column("conv_rate").to_pylist() == answer.to_dict()["conv_rate"]
    assert table.column_names[:5] == ["driver_id", "request_time", "request_id", "entity_index", "rush_hour"]


def test_the_spark_engine_refuses_a_feature_log_before_starting_spark(
    repo: Path, served: dict[str, Any]
) -> None:
    config = dataclasses.replace(open_store(repo).config, offline_engine="spark")
    with pytest.raises(InvalidRequestError, match="needs the duckdb offline engine"):
        featurestore.FeatureStore(config=config).get_training_set(FeatureLog(served["log"]), SERVED)
