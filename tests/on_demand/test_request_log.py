"""A served on-demand request is logged with its request data, from both transports, so a
training set built from the log sees the request fields the model saw."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from featurestore import Client
from tests.serving.support import ServeProcess
from tests.support.redis import RedisServer


def test_request_data_of_on_demand_requests_is_logged(
    od_repo: Path, od_redis: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    server = ServeProcess(od_repo, od_redis.url, "--request-log", str(log), "--request-log-sample", "1")
    try:
        server.start()
        body = {
            "features": ["combo:ab_x"],
            "entities": {"driver_id": [0, 7]},
            "request_data": {"x": [1.5, None], "flag": [True, False]},
        }
        answer = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        with Client(server.target) as client:
            client.get_online_features(
                ["combo:label"], {"driver_id": [0]}, request_data={"x": [-2.0], "flag": [None]}
            )
    finally:
        assert server.stop() == 0  # a graceful stop writes what is queued
    rows = pq.read_table(sorted(log.rglob("*.parquet"))).to_pylist()
    logged = {
        (r["transport"], r["entity_index"]): json.loads(r["request_json"])
        for r in rows
        if r["request_json"] is not None
    }
    assert logged == {
        ("http", 0): {"x": 1.5, "flag": True},
        ("http", 1): {"x": None, "flag": False},
        ("grpc", 0): {"x": -2.0, "flag": None},
    }
