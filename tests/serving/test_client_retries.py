"""featurestore.Client retries UNAVAILABLE within its deadline, and nothing else.

The other end is a bare gRPC server on loopback that answers the FeatureServing method with
a scripted sequence of status codes: the client under test cannot tell it from a server
whose Redis is briefly away, and the test can count the attempts exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

import featurestore
from featurestore.errors import InvalidRequestError, OnlineStoreUnavailable
from featurestore.serving.v1 import serving_pb2 as pb

SERVICE = "featurestore.serving.v1.FeatureServing"


class Scripted:
    """Answers each call with the next status of ``script`` (OK: a one-column response)."""

    def __init__(self) -> None:
        self.script: list[grpc.StatusCode] = []
        self.attempts = 0

    def __call__(self, request: pb.GetOnlineFeaturesRequest, context: grpc.ServicerContext) -> bytes:
        self.attempts += 1
        code = self.script.pop(0) if self.script else grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            context.abort(code, f"scripted {code.name}")
        response = pb.GetOnlineFeaturesResponse(registry_version=7)
        col = response.features.add(name="v", reference="view:v", type=pb.INT64)
        col.values.int64_values.values.extend(request.entities["id"].int64_values.values)
        col.statuses.extend([pb.PRESENT] * len(request.entities["id"].int64_values.values))
        col.event_timestamps.extend([1] * len(request.entities["id"].int64_values.values))
        return response.SerializeToString()


@pytest.fixture
def scripted() -> Iterator[tuple[str, Scripted]]:
    handler = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    method = grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=pb.GetOnlineFeaturesRequest.FromString, response_serializer=bytes
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"GetOnlineFeatures": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        server.stop(grace=None)


def test_unavailable_is_retried_until_an_answer(scripted: tuple[str, Scripted]) -> None:
    target, handler = scripted
    handler.script = [grpc.StatusCode.UNAVAILABLE] * 3
    with featurestore.Client(target, timeout=10) as client:
        answer = client.get_online_features(["view:v"], {"id": [4, 5]})
    assert handler.attempts == 4  # three refusals, then the answer, within one call
    assert answer.columns == {"v": [4, 5]} and answer.registry_version == 7


def test_retries_are_bounded_then_the_error_is_typed(scripted: tuple[str, Scripted]) -> None:
    target, handler = scripted
    handler.script = [grpc.StatusCode.UNAVAILABLE] * 10
    with featurestore.Client(target, timeout=10) as client, pytest.raises(OnlineStoreUnavailable) as error:
        client.get_online_features(["view:v"], {"id": [1]})
    assert handler.attempts == 4
    assert error.value.message == "UNAVAILABLE: scripted UNAVAILABLE"


def test_other_errors_are_not_retried(scripted: tuple[str, Scripted]) -> None:
    target, handler = scripted
    handler.script = [grpc.StatusCode.INVALID_ARGUMENT]
    with featurestore.Client(target, timeout=10) as client, pytest.raises(InvalidRequestError):
        client.get_online_features(["view:v"], {"id": [1]})
    assert handler.attempts == 1
