"""A failing on-demand view answers its request with a status naming the view, never a crash
or a traceback; bad request data is the caller's error; a slow function meets the deadline."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError, OnDemandError
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import ServeProcess
from tests.support.redis import RedisServer
from tests.support.repos import edit


@pytest.fixture(scope="module")
def stub(od_server: ServeProcess) -> Iterator[pb_grpc.FeatureServingStub]:
    with grpc.insecure_channel(od_server.target) as channel:
        yield pb_grpc.FeatureServingStub(channel)


def grpc_error(
    stub: pb_grpc.FeatureServingStub, request: pb.GetOnlineFeaturesRequest, timeout: float = 10
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        stub.GetOnlineFeatures(request, timeout=timeout)
    return e.value


def request(features: list[str], ids: list[int], **request_data: pb.Values) -> pb.GetOnlineFeaturesRequest:
    message = pb.GetOnlineFeaturesRequest(features=features)
    message.entities["driver_id"].int64_values.values.extend(ids)
    for name, values in request_data.items():
        message.request_data[name].CopyFrom(values)
    return message


def doubles(*values: float) -> pb.Values:
    out = pb.Values()
    out.double_values.values.extend(values)
    return out


def post(server: ServeProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)


FUNCTION_FAILURES = [
    ("boom", "its function raised RuntimeError: boom from user code"),
    ("short", "its function returned 1 rows for 2 input rows"),
    ("wrong_type", "its function returned string values for 'out', declared Float64"),
    ("not_a_frame", "its function returned list, not a pandas DataFrame"),
]


@pytest.mark.parametrize(("view", "says"), FUNCTION_FAILURES)
def test_a_failing_function_answers_failed_precondition_naming_the_view(
    stub: pb_grpc.FeatureServingStub, od_server: ServeProcess, view: str, says: str
) -> None:
    e = grpc_error(stub, request([f"{view}:out"], [0, 1]))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"on-demand view {view!r}: {says}" in e.details()
    assert "Traceback" not in e.details() and 'File "' not in e.details()

    answer = post(od_server, {"features": [f"{view}:out"], "entities": {"driver_id": [0, 1]}})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "FAILED_PRECONDITION"
    assert f"on-demand view {view!r}: {says}" in error["message"]
    assert "Traceback" not in answer.text

    if view == "boom":  # the traceback is for the server's log, once a minute per view
        assert od_server.stderr.count("on-demand view 'boom': its function raised (once a minute") == 1
        assert 'raise RuntimeError("boom from user code")' in od_server.stderr

    # the server goes on serving, the same view's neighbours included
    ok = stub.GetOnlineFeatures(request(["stats:a"], [0]), timeout=10)
    assert list(ok.features[0].statuses) == [pb.PRESENT]


@pytest.mark.parametrize(
    ("grpc_data", "json_data", "says"),
    [
        (
            {"flag": pb.Values(bool_values=pb.BoolList(values=[True]))},
            {"flag": [True]},
            "missing request field 'x'",
        ),
        (
            {
                "x": pb.Values(string_values=pb.StringList(values=["far"])),
                "flag": pb.Values(bool_values=pb.BoolList(values=[True])),
            },
            {"x": ["far"], "flag": [True]},
            "request field 'x'",
        ),
        (
            {"x": doubles(1.0, 2.0), "flag": pb.Values(bool_values=pb.BoolList(values=[True]))},
            {"x": [1.0, 2.0], "flag": [True]},
            "request field 'x' has 2 values for 1 entities",
        ),
        (
            {"x": doubles(1.0), "flag": pb.Values(bool_values=pb.BoolList(values=[True])), "y": doubles(1.0)},
            {"x": [1.0], "flag": [True], "y": [1.0]},
            "unknown request field(s) ['y']",
        ),
    ],
)
def test_bad_request_data_is_invalid_argument_naming_the_field(
    stub: pb_grpc.FeatureServingStub,
    od_server: ServeProcess,
    grpc_data: dict[str, pb.Values],
    json_data: dict[str, Any],
    says: str,
) -> None:
    e = grpc_error(stub, request(["chooser:picked"], [0], **grpc_data))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in e.details()
    answer = post(
        od_server, {"features": ["chooser:picked"], "entities": {"driver_id": [0]}, "request_data": json_data}
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]


def test_a_mistyped_request_field_says_which_type_it_takes(stub: pb_grpc.FeatureServingStub) -> None:
    flags = pb.Values(bool_values=pb.BoolList(values=[True]))
    e = grpc_error(
        stub,
        request(
            ["chooser:picked"], [0], x=pb.Values(string_values=pb.StringList(values=["far"])), flag=flags
        ),
    )
    assert "request field 'x' of on-demand view 'chooser' takes Float64 values, got string" in e.details()


def test_request_data_without_on_demand_features_is_refused(stub: pb_grpc.FeatureServingStub) -> None:
    e = grpc_error(stub, request(["stats:a"], [0], x=doubles(1.0)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_data is only for on-demand features" in e.details()


def test_a_slow_function_is_bounded_by_the_deadline(
    stub: pb_grpc.FeatureServingStub, od_server: ServeProcess
) -> None:
    flags = pb.Values(bool_values=pb.BoolList(values=[True]))
    started = time.monotonic()
    e = grpc_error(stub, request(["slow:out"], [0], x=doubles(3.0), flag=flags))
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "on-demand view(s) ['slow'] did not compute within the deadline (0.5 s)" in e.details()
    assert time.monotonic() - started < 2.0  # the server's bound, not the function's 3 s

    # a caller's sooner deadline is the bound
    started = time.monotonic()
    e = grpc_error(stub, request(["slow:out"], [0], x=doubles(3.0), flag=flags), timeout=0.2)
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.0

    started = time.monotonic()
    answer = post(
        od_server,
        {
            "features": ["slow:out"],
            "entities": {"driver_id": [0]},
            "request_data": {"x": [3.0], "flag": [True]},
        },
    )
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "DEADLINE_EXCEEDED"
    assert "'slow'" in answer.json()["error"]["message"]
    assert time.monotonic() - started < 2.0
    # and quick functions are still answered meanwhile
    ok = post(
        od_server,
        {
            "features": ["slow:out"],
            "entities": {"driver_id": [0]},
            "request_data": {"x": [0.0], "flag": [True]},
        },
    )
    assert ok.status_code == 200, ok.text


def test_training_sets_report_the_same_failures(od_repo: Path) -> None:
    now = datetime.now(UTC)
    frame = pa.table({"driver_id": [0], "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC"))})
    fs = FeatureStore(od_repo)
    with pytest.raises(
        OnDemandError, match="on-demand view 'boom': its function raised RuntimeError: boom from user code"
    ):
        with fs.get_training_set(frame, ["boom:out"]) as ts:
            ts.to_arrow()
    with pytest.raises(
        InvalidRequestError,
        match="entity frame has no column 'x', the request field on-demand view 'chooser' reads",
    ):
        fs.get_training_set(frame, ["chooser:picked"])
    bad = frame.append_column("x", pa.array(["far"])).append_column("flag", pa.array([True]))
    with pytest.raises(
        InvalidRequestError,
        match="request field 'x' of on-demand view 'chooser' takes Float64 values, got string",
    ):
        fs.get_training_set(bad, ["chooser:picked"])
    fs.close()


def test_code_changed_since_apply_is_refused_until_applied(
    od_repo: Path, od_redis: RedisServer, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(od_repo, repo)
    edit(repo / "defs.py", '"ab_x": df["a"] * df["b"] + df["x"],', '"ab_x": df["a"] * df["b"] - df["x"],')
    server = ServeProcess(repo, od_redis.url).start()
    try:
        body = {
            "features": ["combo:ab_x"],
            "entities": {"driver_id": [0]},
            "request_data": {"x": [1.0], "flag": [True]},
        }
        answer = post(server, body)
        assert answer.status_code == 422
        message = answer.json()["error"]["message"]
        assert "on-demand view 'combo': its function's code in the repo" in message
        assert "differs from the applied one" in message and "run 'featurestore apply'" in message
        with grpc.insecure_channel(server.target) as channel:
            e = grpc_error(
                pb_grpc.FeatureServingStub(channel),
                request(
                    ["combo:ab_x"],
                    [0],
                    x=doubles(1.0),
                    flag=pb.Values(bool_values=pb.BoolList(values=[True])),
                ),
            )
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "on-demand view 'combo'" in e.details()
        # views whose code did not change are served
        assert post(
            server,
            {
                "features": ["chooser:x_int"],
                "entities": {"driver_id": [0]},
                "request_data": {"x": [1.4], "flag": [True]},
            },
        ).json()["features"][0]["values"] == [1]
    finally:
        server.stop()
    fs = FeatureStore(repo)
    frame = pa.table(
        {
            "driver_id": [0],
            "event_timestamp": pa.array([0], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "x": [1.0],
            "flag": [True],
        }
    )
    with pytest.raises(OnDemandError, match="run 'featurestore apply'"):
        fs.get_training_set(frame, ["combo:ab_x"])
    assert [c.name for c in fs.plan().changes] == ["combo"]
    fs.apply()
    with fs.get_training_set(frame, ["combo:ab_x"]) as ts:
        assert ts.to_arrow().column_names[-1] == "ab_x"
    fs.close()


def test_the_spark_engine_refuses_on_demand_features_before_starting_spark(
    od_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURESTORE_OFFLINE_ENGINE", "spark")
    fs = FeatureStore(od_repo)
    frame = pa.table(
        {"driver_id": [0], "event_timestamp": pa.array([0], pa.int64()).cast(pa.timestamp("us", tz="UTC"))}
    )
    with pytest.raises(
        InvalidRequestError, match=r"on-demand features \(\['boom'\]\) are not supported on the Spark engine"
    ):
        fs.get_training_set(frame, ["boom:out"])
    fs.close()
