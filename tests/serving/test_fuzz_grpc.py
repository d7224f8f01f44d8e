"""Hypothesis against the live gRPC server: generated requests, and raw or corrupted bytes.

The server is a real `featurestore serve` (grpc.aio) over the example repo materialized into
a real redis-server. Every answer is OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED, never
UNKNOWN or INTERNAL; requests built from valid parts succeed; an OK answer has one value,
status and time per entity per requested feature, equal to what the Parquet sources say
(tests/serving/fuzzing.py). Bounded: fixed example counts, derandomized.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.serving import convert
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.fuzzing import Column, Reference, Req, requests
from tests.serving.support import SERVICE, SERVING, ServeProcess, health

ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def reference(served_repo: Path) -> Reference:
    return Reference(served_repo)


@pytest.fixture(scope="module")
def channel(server: ServeProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


def columns(response: pb.GetOnlineFeaturesResponse) -> tuple[list[Column], dict[str, list[int | None]]]:
    out = []
    for col in response.features:
        statuses = [pb.FieldStatus.Name(s) for s in col.statuses]
        values = convert.values_list(col.values, col.type)
        for i, (v, s) in enumerate(zip(values, statuses, strict=True)):
            if s != "PRESENT":
                assert not v, f"{col.name}[{i}] is {s} but holds {v!r}, not the zero value"
                values[i] = None
        stamps = [t or None for t in col.event_timestamps]
        out.append(Column(col.name, col.reference, values, statuses, stamps))
    runs = {r.view: [x or None for x in r.run_ids] for r in response.runs}
    return out, runs


def test_generated_requests_get_a_precise_status_and_consistent_values(
    channel: grpc.Channel, server: ServeProcess, reference: Reference
) -> None:
    stub = pb_grpc.FeatureServingStub(channel)
    seen: dict[str, int] = {}

    @settings(FUZZ, max_examples=300)
    @given(req=requests(reference))
    def check(req: Req) -> None:
        before = datetime.now(UTC)
        try:
            response = stub.GetOnlineFeatures(req.to_proto(), timeout=10)
        except grpc.RpcError as e:
            assert e.code() in ERRORS, f"{e.code()}: {e.details()}"
            assert not req.valid, f"a valid request failed: {e.code()}: {e.details()}"
            assert e.details(), "an error without a message"
            seen[e.code().name] = seen.get(e.code().name, 0) + 1
            return
        found, runs = columns(response)
        reference.check(req, found, runs, before, datetime.now(UTC))
        seen["OK"] = seen.get("OK", 0) + 1

    check()
    assert seen.get("OK", 0) > 50 and seen.get("INVALID_ARGUMENT", 0) > 50, seen  # both sides were explored
    assert health(server.target) == SERVING


def test_random_and_corrupted_bytes_are_invalid_argument_or_answered(
    channel: grpc.Channel, server: ServeProcess, reference: Reference
) -> None:
    raw = channel.unary_unary(f"/{SERVICE}/GetOnlineFeatures")
    valid = Req(["driver_stats:city"], "", {"driver_id": ("int64_values", [1001, 1002])}).to_proto()
    good = valid.SerializeToString()

    @st.composite
    def corrupted(draw: st.DrawFn) -> bytes:  # the valid message with a few bytes replaced
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    @settings(FUZZ, max_examples=200)
    @given(data=st.binary(max_size=300) | corrupted() | st.binary().map(lambda tail: good + tail))
    def check(data: bytes) -> None:
        try:
            answer: Any = raw(data, timeout=10)
        except grpc.RpcError as e:
            assert e.code() in ERRORS, f"{e.code()}: {e.details()}"
            return
        pb.GetOnlineFeaturesResponse.FromString(answer)  # an OK answer is a well-formed response

    check()
    assert health(server.target) == SERVING
