"""Bad requests: INVALID_ARGUMENT over gRPC, 400/422 with a JSON error over HTTP, naming the culprit."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

import featurestore
from featurestore.errors import InvalidRequestError
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import MAX_ENTITIES, SERVING, ServeProcess, health

CITY = ["driver_stats:city"]
Features = list[str] | str | None  # None: both features and a service

# id -> (features or service name, entities, texts the message must contain)
CASES: dict[str, tuple[Features, dict[str, list[Any]], tuple[str, ...]]] = {
    "unknown-feature": (["driver_stats:no_such_feature"], {"driver_id": [1001]}, ("no_such_feature",)),
    "unknown-view": (["no_such_view:city"], {"driver_id": [1001]}, ("no_such_view",)),
    "unknown-service": ("no_such_service", {"driver_id": [1001]}, ("no_such_service",)),
    "not-a-reference": (["driver_stats"], {"driver_id": [1001]}, ("'driver_stats'", "view:feature")),
    "missing-join-key": (CITY, {"customer_id": [5001]}, ("missing join key 'driver_id'",)),
    "unknown-join-key": (CITY, {"driver_id": [1001], "zone": [1]}, ("zone",)),
    "mistyped-join-key": (CITY, {"driver_id": ["1001"]}, ("driver_id", "Int64", "'1001'")),
    "unequal-lengths": ("trip_model", {"driver_id": [1001, 1002], "customer_id": [5001]}, ("customer_id",)),
    "empty-batch": (CITY, {"driver_id": []}, ("no entities",)),
    "too-many": (CITY, {"driver_id": list(range(MAX_ENTITIES + 1))},
                 (f"{MAX_ENTITIES + 1} entities", f"limit of {MAX_ENTITIES}")),
    "features-and-service": (None, {"driver_id": [1001]}, ("either features or feature_service",)),
    "neither": ([], {"driver_id": [1001]}, ("no features requested",)),
}


def grpc_request(features: Features, entities: dict[str, list[Any]]) -> pb.GetOnlineFeaturesRequest:
    request = pb.GetOnlineFeaturesRequest()
    if features is None:
        request.features.extend(CITY)
        request.feature_service = "trip_model"
    elif isinstance(features, str):
        request.feature_service = features
    else:
        request.features.extend(features)
    for name, values in entities.items():
        if all(isinstance(v, int) for v in values):
            request.entities[name].CopyFrom(pb.Values(int64_values=pb.Int64List(values=values)))
        else:
            request.entities[name].CopyFrom(pb.Values(string_values=pb.StringList(values=values)))
    return request


def http_body(features: Features, entities: dict[str, list[Any]]) -> dict[str, Any]:
    if features is None:
        return {"features": CITY, "feature_service": "trip_model", "entities": entities}
    if isinstance(features, str):
        return {"feature_service": features, "entities": entities}
    return {"features": features, "entities": entities}


@pytest.fixture(scope="module")
def stub(server: ServeProcess) -> Any:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.FeatureServingStub(channel)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_requests_are_invalid_argument_everywhere(stub: Any, server: ServeProcess, case: str) -> None:
    features, entities, texts = CASES[case]

    with pytest.raises(grpc.RpcError) as raw:
        stub.GetOnlineFeatures(grpc_request(features, entities), timeout=5)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for text in texts:
        assert text in raw.value.details()

    url = f"{server.http_url}/v1/online-features"
    answer = httpx.post(url, json=http_body(features, entities), timeout=5)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    for text in texts:
        assert text in error["message"]
    assert set(answer.json()) == {"error"}

    if features is not None:  # the client cannot ask for both
        with featurestore.Client(server.target) as client, pytest.raises(InvalidRequestError) as typed:
            client.get_online_features(features, entities)
        assert typed.value.message.startswith("INVALID_ARGUMENT: ")
        for text in texts:
            assert text in typed.value.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"features": CITY}, "entities"),
        ({"features": CITY, "entities": {"driver_id": [1.5]}}, "driver_id"),
        ({"features": CITY, "entities": {"driver_id": [True]}}, "driver_id"),
        ({"features": CITY, "entities": {"driver_id": 1001}}, "driver_id"),
        ({"features": "driver_stats:city", "entities": {"driver_id": [1001]}}, "features"),
        ({"features": CITY, "entities": {"driver_id": [1001]}, "feature": ["x"]}, "feature"),
    ],
    ids=["no-entities", "float-key", "bool-key", "scalar-key", "features-not-a-list", "unknown-field"],
)
def test_http_rejects_malformed_bodies_with_422(
    server: ServeProcess, body: dict[str, Any], text: str
) -> None:
    answer = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=5)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert text in answer.json()["error"]["message"]


def test_http_rejects_invalid_json(server: ServeProcess) -> None:
    answer = httpx.post(
        f"{server.http_url}/v1/online-features", content=b"{not json",
        headers={"content-type": "application/json"}, timeout=5,
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_join_key_sent_as_floats_is_invalid_argument(stub: Any) -> None:
    request = pb.GetOnlineFeaturesRequest(features=CITY)
    request.entities["driver_id"].CopyFrom(pb.Values(double_values=pb.DoubleList(values=[1001.0])))
    with pytest.raises(grpc.RpcError) as raw:
        stub.GetOnlineFeatures(request, timeout=5)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "driver_id" in raw.value.details()
    assert "double_values" in raw.value.details()


def test_malformed_protobuf_is_an_error_and_the_server_keeps_serving(stub: Any, server: ServeProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_unary(
            "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures",
            request_serializer=None,
            response_deserializer=None,
        )
        for garbage in (b"\xff\xff\xff\xff\x0f", b"\x1a\x05\x0a\x03abc\x80", b"\x0a\xff\xff\xff\xff\x7f"):
            with pytest.raises(grpc.RpcError) as error:
                raw(garbage, timeout=5)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed GetOnlineFeaturesRequest" in error.value.details()

    assert server.process is not None and server.process.poll() is None
    assert health(server.target) == SERVING
    request = grpc_request(CITY, {"driver_id": [1001]})
    response = stub.GetOnlineFeatures(request, timeout=5)
    assert list(response.features[0].statuses) == [pb.PRESENT]
    assert response.features[0].values.string_values.values[0] != ""
