"""On-demand features in the request log: served over gRPC and HTTP, logged with their values
and statuses, compared by skew like any feature, and taken as served by a FeatureLog; files of
the first format (without them) still read, and a FeatureLog says when they cannot answer."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import Client, FeatureLog, FeatureStore
from featurestore.errors import InvalidRequestError
from featurestore.offline.request_log_format import META_VERSION, format_version, read_log_file
from tests.on_demand.support import Row, make_repo, reference, write_rows
from tests.serving.support import ServeProcess, open_store
from tests.support.redis import RedisServer

NOW = datetime.now(UTC)
ROWS = [Row(0, NOW - timedelta(hours=1), 1.0, 1, "seed"), Row(1, NOW - timedelta(hours=2), 2.5, 3, "one")]
HTTP = {  # driver 7 is unknown: its inputs reach the functions as nulls
    "features": ["combo:ab_x", "combo:label", "stats:b"],
    "entities": {"driver_id": [0, 1, 7]},
    "request_data": {"x": [1.5, None, 2.0], "flag": [True, False, None]},
}
GRPC = (
    ["chooser:picked", "combo:a_or_default"],
    {"driver_id": [0, 7]},
    {"x": [-2.0, 4.0], "flag": [True, False]},
)
ON_DEMAND = ["combo:ab_x", "combo:label", "chooser:picked", "combo:a_or_default"]


@pytest.fixture(scope="module")
def od_logged(tmp_path_factory: pytest.TempPathFactory, monitoring_redis: RedisServer) -> dict[str, Any]:
    """An on-demand repo served with complete logging: one HTTP and one gRPC request, and what
    the clients received."""
    folder = tmp_path_factory.mktemp("od-log")
    repo = make_repo(folder / "repo", NOW)
    write_rows(repo, "seed", ROWS)
    toml = repo / "featurestore.toml"
    toml.write_text(toml.read_text() + f'\n[online]\nredis_url = "{monitoring_redis.url}"\n')
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize()
    fs.close()
    log = folder / "log"
    server = ServeProcess(repo, monitoring_redis.url, "--request-log", str(log), "--request-log-sample", "1")
    try:
        server.start()
        http = httpx.post(f"{server.http_url}/v1/online-features", json=HTTP, timeout=10)
        assert http.status_code == 200, http.text
        with Client(server.target, timeout=10) as client:
            grpc = client.get_online_features(GRPC[0], GRPC[1], request_data=GRPC[2])
    finally:
        assert server.stop() == 0  # SIGTERM: the log writes what it holds
    return {"repo": repo, "log": log, "http": http.json(), "grpc": grpc}


def _expected(driver: int, x: float | None, flag: bool | None) -> dict[str, Any]:
    row = next((r for r in ROWS if r.driver_id == driver), None)
    return reference(row, x, flag)


def test_on_demand_features_are_logged_as_served_on_both_transports(od_logged: dict[str, Any]) -> None:
    files = sorted(od_logged["log"].glob("*.parquet"))
    assert files and all(format_version(f) == 2 for f in files)
    rows = pa.concat_tables([read_log_file(f) for f in files]).to_pylist()
    logged = {(r["transport"], r["entity_index"], r["feature"]): r for r in rows}
    http = {f["name"]: f for f in od_logged["http"]["features"]}
    for e, driver in enumerate(HTTP["entities"]["driver_id"]):
        want = _expected(driver, HTTP["request_data"]["x"][e], HTTP["request_data"]["flag"][e])
        for ref in ("combo:ab_x", "combo:label"):
            r = logged[("http", e, ref)]
            name = ref.split(":")[1]
            assert (
                r["value_json"] is None if want[name] is None else json.loads(r["value_json"]) == want[name]
            )
            assert json.loads(r["value_json"] or "null") == http[name]["values"][e]  # what the client got
            assert (
                r["status"]
                == ("NULL_VALUE" if want[name] is None else "PRESENT")
                == http[name]["statuses"][e]
            )
            assert r["event_timestamp"] is None and r["run_id"] is None  # computed: no event time, no run
    grpc = od_logged["grpc"]
    for e, driver in enumerate(GRPC[1]["driver_id"]):
        want = _expected(driver, GRPC[2]["x"][e], GRPC[2]["flag"][e])
        for ref in GRPC[0]:
            name = ref.split(":")[1]
            r = logged[("grpc", e, ref)]
            assert json.loads(r["value_json"]) == want[name] == grpc.to_dict()[name][e]
            assert r["status"] == "PRESENT" == grpc.statuses[name][e]
    # The looked-up inputs are logged as before, beside the computed features.
    assert logged[("grpc", 0, "stats:a")]["status"] == "PRESENT"
    assert logged[("grpc", 1, "stats:a")]["status"] == "NOT_FOUND"
    assert {r["feature"] for r in rows if r["transport"] == "http"} == {
        "combo:ab_x",
        "combo:label",
        "stats:a",
        "stats:b",
        "stats:s",
    }


def test_skew_compares_on_demand_features_with_the_offline_computation(
    od_logged: dict[str, Any], tmp_path: Path
) -> None:
    report = open_store(od_logged["repo"]).skew(od_logged["log"])
    compared = {f.feature: f.compared for f in report.features}
    assert {ref: compared.get(ref) for ref in ON_DEMAND} == {
        "combo:ab_x": 3,
        "combo:label": 3,
        "chooser:picked": 2,
        "combo:a_or_default": 2,
    }
    assert report.skewed == []
    # The offline store changed under what was served (driver 0's `a`, before the requests):
    # the features computed from it are flagged, the others not.
    repo = tmp_path / "repo"
    shutil.copytree(od_logged["repo"], repo)
    write_rows(repo, "later", [Row(0, NOW - timedelta(minutes=30), 10.0, 1, "seed")])
    fs = open_store(repo)
    fs.ingest()
    report = fs.skew(od_logged["log"])
    assert [f.feature for f in report.skewed] == [
        "chooser:picked",
        "combo:a_or_default",
        "combo:ab_x",
        "stats:a",
    ]
    ab_x = next(f for f in report.skewed if f.feature == "combo:ab_x")
    assert ab_x.mismatches == 1 and ab_x.examples[0]["served"] == "2.5"  # 1.0 * 1 + 1.5
    assert json.loads(ab_x.examples[0]["offline"]) == 10.0 * 1 + 1.5


def test_a_feature_log_returns_on_demand_features_as_served(
    od_logged: dict[str, Any], tmp_path: Path
) -> None:
    fs = open_store(od_logged["repo"])
    with fs.get_training_set(FeatureLog(od_logged["log"]), ["combo:ab_x", "chooser:picked", "stats:b"]) as ts:
        table = ts.to_arrow()
        ts.to_parquet(tmp_path / "od.parquet")
        manifest = ts.manifest
    again = fs.reproduce_training_set(manifest["id"], tmp_path / "again.parquet")
    assert again.identical, again
    assert table.column_names == [
        "driver_id",
        "request_time",
        "request_id",
        "entity_index",
        "flag",
        "x",
        "b",
        "b__status",
        "ab_x",
        "ab_x__status",
        "picked",
        "picked__status",
    ]  # the inputs only the functions read (a, s) are not columns
    rows = table.to_pylist()
    http = {f["name"]: f for f in od_logged["http"]["features"]}
    assert [r["ab_x"] for r in rows[:3]] == http["ab_x"]["values"]
    assert [r["ab_x__status"] for r in rows[:3]] == http["ab_x"]["statuses"]
    assert [r["picked"] for r in rows[3:]] == od_logged["grpc"].to_dict()["picked"]
    assert [r["picked__status"] for r in rows[3:]] == ["PRESENT", "PRESENT"]
    assert rows[3]["ab_x"] is None and rows[3]["ab_x__status"] is None  # not asked in that request
    assert manifest["feature_log"]["served"] == ["stats:b", "combo:ab_x", "chooser:picked"]


def test_a_first_format_file_still_reads_and_a_feature_log_says_what_it_cannot_answer(
    od_logged: dict[str, Any], tmp_path: Path
) -> None:
    table = pa.concat_tables([pq.read_table(f) for f in sorted(od_logged["log"].glob("*.parquet"))])
    old = table.filter(pa.compute.invert(pa.compute.is_in(table.column("feature"), pa.array(ON_DEMAND))))
    folder = tmp_path / "mixed"
    folder.mkdir()
    first = old.replace_schema_metadata({k: v for k, v in old.schema.metadata.items() if k != META_VERSION})
    pq.write_table(first, folder / "a-old.parquet")
    later = NOW + timedelta(days=1)
    pq.write_table(
        table.set_column(1, "request_time", pa.array([later] * table.num_rows, table.field(1).type)),
        folder / "b-new.parquet",
    )
    assert format_version(folder / "a-old.parquet") == 1 and format_version(folder / "b-new.parquet") == 2
    assert read_log_file(folder / "a-old.parquet").num_rows == old.num_rows
    fs = open_store(od_logged["repo"])
    with fs.get_training_set(FeatureLog(folder), ["stats:b"]) as ts:  # looked-up features: as before
        assert ts.to_arrow().num_rows == 2 * 5
    with pytest.raises(InvalidRequestError, match="written before on-demand features were logged"):
        fs.get_training_set(FeatureLog(folder), ["combo:ab_x"])
    with fs.get_training_set(FeatureLog(folder, start=later), ["combo:ab_x"]) as ts:
        assert ts.to_arrow().column("ab_x__status").to_pylist()[:3] == ["PRESENT", "NULL_VALUE", "NULL_VALUE"]
    with pytest.raises(
        InvalidRequestError, match=r"no served values of on-demand feature\(s\) \['chooser:x_int'\]"
    ):
        fs.get_training_set(FeatureLog(folder, start=later), ["combo:ab_x", "chooser:x_int"])
