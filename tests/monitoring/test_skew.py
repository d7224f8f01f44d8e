"""The request log is written and flushed on SIGTERM; skew is zero for a consistent store and
flags exactly the feature whose value was changed in Redis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis

import featurestore
from featurestore.config import load_config
from featurestore.errors import ConfigError
from featurestore.online.codec import ViewCodec
from featurestore.online.keys import entity_tag, view_key
from tests.serving.support import ServeProcess, open_store
from tests.support.cli import run_cli
from tests.support.metrics import sample, scrape
from tests.support.redis import RedisServer

ENTITIES = {"driver_id": [1001, 1002, 7], "customer_id": [5001, 9, 5003]}
N_FEATURES = 16  # trip_model: 13 driver_stats features + 3 customer_profile features


def _serve_and_log(repo: Path, redis_url: str, log: Path, grpc_calls: int, http_calls: int) -> None:
    server = ServeProcess(repo, redis_url, "--request-log", str(log), "--request-log-sample", "1").start()
    try:
        with featurestore.Client(server.target, timeout=10) as client:
            for _ in range(grpc_calls):
                client.get_online_features("trip_model", ENTITIES)
        for _ in range(http_calls):
            body = {
                "features": ["driver_stats:conv_rate", "driver_stats:city"],
                "entities": {"driver_id": [1003]},
            }
            response = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)
            assert response.status_code == 200, response.text
        samples = scrape(server.http_url)
        assert sample(samples, "featurestore_request_log_dropped_total") == 0
    finally:
        assert server.stop() == 0  # SIGTERM: the log writes what it holds before the process ends


def _log_rows(log: Path) -> pa.Table:
    files = sorted(log.glob("*.parquet"))
    assert files and not list(log.glob("*.partial"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_request_log_is_flushed_on_sigterm_and_skew_is_zero(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    _serve_and_log(served_repo, monitoring_redis.url, log, grpc_calls=3, http_calls=2)

    rows = _log_rows(log)
    # Every request, entity and feature: nothing sampled away (sample 1), nothing lost at shutdown.
    assert rows.num_rows == 3 * 3 * N_FEATURES + 2 * 1 * 2
    assert len(set(rows.column("request_id").to_pylist())) == 5
    assert sorted(set(rows.column("transport").to_pylist())) == ["grpc", "http"]
    by_key = {
        (json.loads(r["entity_json"])["driver_id"], r["feature"]): r
        for r in rows.to_pylist()
        if r["transport"] == "grpc"
    }
    assert by_key[(7, "driver_stats:conv_rate")]["status"] == "NOT_FOUND"
    assert by_key[(7, "driver_stats:conv_rate")]["value_json"] is None
    served = by_key[(1001, "driver_stats:conv_rate")]
    local = open_store(served_repo).get_online_features(["driver_stats:conv_rate"], {"driver_id": [1001]})
    assert served["status"] == "PRESENT"
    assert json.loads(served["value_json"]) == local.to_dict()["conv_rate"][0]
    assert served["event_timestamp"] is not None

    report = open_store(served_repo).skew(log)
    assert report.requests == 5 and report.files >= 1
    assert len(report.features) == N_FEATURES
    assert report.skewed == []
    compared = {f.feature: f.compared for f in report.features}
    assert compared["driver_stats:conv_rate"] == 3 * 3 + 2
    assert compared["customer_profile:lifetime_orders"] == 3 * 3


def _tamper(repo: Path, redis_url: str, driver_id: int, feature: str, delta: float) -> None:
    """Change one feature of one entity's value directly in Redis, keeping its header."""
    store = open_store(repo)
    codec = ViewCodec(store.get_feature_view("driver_stats"))
    key = view_key(entity_tag(store.config.project, ["driver_id"], [driver_id]), "driver_stats")
    client = redis.Redis.from_url(redis_url)
    try:
        decoded = codec.decode(client.get(key))
        assert decoded is not None
        values = list(decoded.values)
        values[[f.name for f in codec.features].index(feature)] += delta
        pairs = zip(codec.features, values, strict=True)
        batch = pa.table({f.name: pa.array([v], f.dtype.arrow) for f, v in pairs})
        encoded = codec.encode(
            batch, np.array([decoded.event_ts_us]), np.array([decoded.created_us]), decoded.run_id
        )
        assert client.set(key, encoded[0].as_py(), keepttl=True)
    finally:
        client.close()


def test_skew_flags_exactly_the_tampered_feature(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    _tamper(served_repo, monitoring_redis.url, 1002, "acc_rate", 0.125)
    try:
        log = tmp_path / "log"
        _serve_and_log(served_repo, monitoring_redis.url, log, grpc_calls=2, http_calls=1)
        result = run_cli("skew", "--repo", str(served_repo), "--log", str(log), "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["skewed"] == ["driver_stats:acc_rate"]
        acc = next(f for f in report["features"] if f["feature"] == "driver_stats:acc_rate")
        assert acc["compared"] == 2 * 3 and acc["mismatches"] == 2  # driver 1002 in each gRPC request
        example = acc["examples"][0]
        assert example["entity"] == {"driver_id": 1002, "customer_id": 9}
        assert json.loads(example["served"]) == json.loads(example["offline"]) + 0.125

        flagged = run_cli("skew", "--repo", str(served_repo), "--log", str(log), "--fail-on-skew",
                          "--features", "driver_stats:acc_rate")
        assert flagged.returncode == 1 and "acc_rate" in flagged.stdout
        clean = run_cli("skew", "--repo", str(served_repo), "--log", str(log), "--fail-on-skew",
                        "--features", "driver_stats:conv_rate,driver_stats:city")
        assert clean.returncode == 0, clean.stdout + clean.stderr
    finally:
        _tamper(served_repo, monitoring_redis.url, 1002, "acc_rate", -0.125)


def test_skew_without_a_log_is_one_clear_error(served_repo: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli("skew", "--repo", str(served_repo), "--log", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: no request log files (*.parquet) in")


def test_request_log_settings_come_from_the_config_or_the_environment(tmp_path: Path) -> None:
    (tmp_path / "featurestore.toml").write_text('project = "p"\n[request_log]\npath = "logs"\nsample = 0.5\n')
    config = load_config(tmp_path, env={})
    assert (config.request_log_path, config.request_log_sample) == (tmp_path / "logs", 0.5)
    env = {"FEATURESTORE_REQUEST_LOG_DIR": "/var/log/fs", "FEATURESTORE_REQUEST_LOG_SAMPLE": "0.02"}
    config = load_config(tmp_path, env=env)
    assert (config.request_log_path, config.request_log_sample) == (Path("/var/log/fs"), 0.02)
    assert load_config(tmp_path, env={"FEATURESTORE_REQUEST_LOG_SAMPLE": "0.02"}).request_log_path == (
        tmp_path / "logs"
    )
    (tmp_path / "featurestore.toml").write_text('project = "p"\n[request_log]\nsample = 2\n')
    with pytest.raises(ConfigError, match="request log sample 2 must be a share of requests in"):
        load_config(tmp_path, env={})


def _rewrite_source(repo: Path, driver_id: int, feature: str, delta: float) -> int:
    """Add ``delta`` to ``feature`` in every source row of one driver; the rows changed."""
    changed = 0
    for path in sorted((repo / "data" / "driver_stats").glob("*.parquet")):
        table = pq.read_table(path)
        mine = pc.equal(table.column("driver_id"), driver_id)
        column = table.column(feature)
        shifted = pc.if_else(mine, pc.add(column, pa.scalar(delta, column.type)), column)
        table = table.set_column(table.schema.get_field_index(feature), feature, shifted)
        pq.write_table(table, path)
        changed += pc.sum(mine).as_py() or 0
    return changed


def test_skew_flags_a_source_rewritten_after_materialization(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    """The offline store changes under what Redis serves: skew names exactly that feature."""
    repo = tmp_path / "repo"  # a copy, DuckDB file included: the shared repo stays as it is
    shutil.copytree(served_repo, repo)
    assert _rewrite_source(repo, 1002, "earnings_today", 25.0) > 0
    ingested = run_cli("materialize", "--offline", "--repo", str(repo))  # DuckDB only, not Redis
    assert ingested.returncode == 0, ingested.stderr

    log = tmp_path / "log"
    _serve_and_log(repo, monitoring_redis.url, log, grpc_calls=2, http_calls=1)
    result = run_cli("skew", "--repo", str(repo), "--log", str(log), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["skewed"] == ["driver_stats:earnings_today"]
    earnings = next(f for f in report["features"] if f["feature"] == "driver_stats:earnings_today")
    assert earnings["mismatches"] == 2  # driver 1002, once in each gRPC request
    example = earnings["examples"][0]
    assert example["entity"]["driver_id"] == 1002
    served, offline = json.loads(example["served"]), json.loads(example["offline"])
    assert offline == pytest.approx(served + 25.0, abs=1e-6)
    # Independent reference: the served value is the one the shared, unchanged repo has.
    local = open_store(served_repo).get_online_features(
        ["driver_stats:earnings_today"], {"driver_id": [1002]}
    )
    assert local.to_dict()["earnings_today"] == [served]
