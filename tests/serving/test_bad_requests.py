"""Requests built to hurt: huge names, out-of-range keys, oversized bodies, odd HTTP.

Each gets a precise status (INVALID_ARGUMENT, RESOURCE_EXHAUSTED; HTTP 400/404/405/413/422)
with the uniform error body, and the server keeps serving. test_errors.py has the ordinary
mistakes; this file has the abuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyarrow as pa
import pytest

from featurestore.errors import InvalidRequestError
from featurestore.serving.grpc_server import MAX_MESSAGE_BYTES
from featurestore.serving.limits import MAX_BODY_BYTES, MAX_ERROR_CHARS, too_large
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.online.helpers import TZ
from tests.serving.support import SERVICE, SERVING, ServeProcess, health
from tests.support.redis import RedisServer
from tests.support.repos import make_store

CITY = ["driver_stats:city"]
HUGE = 1_000_000  # characters: far beyond the 8-16 KiB a gRPC status message may take


@pytest.fixture(scope="module")
def stub(server: ServeProcess) -> Iterator[Any]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.FeatureServingStub(channel)


def ask(stub: Any, request: pb.GetOnlineFeaturesRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetOnlineFeatures(request, timeout=10)
    return raised.value


def request(
    features: list[str] | None = None, service: str = "", **keys: list[Any]
) -> pb.GetOnlineFeaturesRequest:
    message = pb.GetOnlineFeaturesRequest(features=features or [], feature_service=service)
    for name, values in keys.items():
        if all(isinstance(v, int) for v in values):
            message.entities[name].int64_values.values.extend(values)
        else:
            message.entities[name].string_values.values.extend(values)
    return message


HUGE_NAMES: dict[str, tuple[pb.GetOnlineFeaturesRequest, dict[str, Any], str]] = {
    "feature": (
        request(["driver_stats:" + "c" * HUGE], driver_id=[1001]),
        {"features": ["driver_stats:" + "c" * HUGE], "entities": {"driver_id": [1001]}},
        "has no feature 'ccc",
    ),
    "service": (
        request(service="s" * HUGE, driver_id=[1001]),
        {"feature_service": "s" * HUGE, "entities": {"driver_id": [1001]}},
        "sss",
    ),
    "join-key-name": (
        request(CITY, driver_id=[1001], **{"k" * HUGE: [1]}),
        {"features": CITY, "entities": {"driver_id": [1001], "k" * HUGE: [1]}},
        "unknown join key(s) ['kkk",
    ),
}


@pytest.mark.parametrize("case", list(HUGE_NAMES))
def test_huge_names_are_echoed_shortened(stub: Any, server: ServeProcess, case: str) -> None:
    message, body, text = HUGE_NAMES[case]

    error = ask(stub, message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert text in error.details()
    assert error.details().endswith("more characters)")
    assert len(error.details()) < MAX_ERROR_CHARS + 100

    answer = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=30)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert text in answer.json()["error"]["message"]
    assert len(answer.json()["error"]["message"]) < MAX_ERROR_CHARS + 100

    assert health(server.target) == SERVING


def post_raw(server: ServeProcess, content: bytes) -> httpx.Response:
    return httpx.post(f"{server.http_url}/v1/online-features", content=content,
                      headers={"content-type": "application/json"}, timeout=30)


def error_of(answer: httpx.Response) -> dict[str, str]:
    body = answer.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}
    return dict(body["error"])


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b'{"features": ["\xff\xfe"], "entities": {"driver_id": [1001]}}', "UnicodeDecodeError"),
        (b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "RecursionError"),
    ],
    ids=["not-utf8", "nested-too-deep"],
)
def test_unparsable_bodies_are_400_with_the_error_body(
    server: ServeProcess, content: bytes, text: str
) -> None:
    answer = post_raw(server, content)
    assert answer.status_code == 400, answer.text[:300]
    error = error_of(answer)
    assert error["code"] == "INVALID_ARGUMENT"
    assert "error parsing the body" in error["message"] and text in error["message"]


def test_unknown_paths_and_methods_answer_in_the_error_body(server: ServeProcess) -> None:
    answer = httpx.get(f"{server.http_url}/v1/no-such-thing", timeout=5)
    assert answer.status_code == 404
    assert error_of(answer) == {"code": "NOT_FOUND", "message": "Not Found"}

    answer = httpx.get(f"{server.http_url}/v1/online-features", timeout=5)
    assert answer.status_code == 405
    assert error_of(answer)["code"] == "UNIMPLEMENTED"
    assert answer.headers["allow"] == "POST"


def test_http_refuses_an_oversized_body_with_413(server: ServeProcess) -> None:
    over = MAX_BODY_BYTES + 1
    body = b'{"features": ["' + b"a" * over + b'"], "entities": {}}'
    answer = post_raw(server, body)  # Content-Length says it: refused before reading
    assert answer.status_code == 413
    assert error_of(answer) == {"code": "RESOURCE_EXHAUSTED", "message": too_large(MAX_BODY_BYTES)}

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused once the count passes the limit
        yield b'{"features": ["'
        for _ in range(over // 1_000_000 + 1):
            yield b"a" * 1_000_000
        yield b'"], "entities": {}}'

    answer = httpx.post(f"{server.http_url}/v1/online-features", content=chunks(),
                        headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 413
    assert error_of(answer) == {"code": "RESOURCE_EXHAUSTED", "message": too_large(MAX_BODY_BYTES)}

    answer = httpx.post(f"{server.http_url}/v1/online-features", timeout=5,
                        json={"features": CITY, "entities": {"driver_id": [1001]}})
    assert answer.status_code == 200
    assert answer.json()["features"][0]["statuses"] == ["PRESENT"]


def test_grpc_refuses_an_oversized_message_with_resource_exhausted(server: ServeProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_unary(f"/{SERVICE}/GetOnlineFeatures")
        with pytest.raises(grpc.RpcError) as error:
            raw(b"\x0a" * (MAX_MESSAGE_BYTES + 1), timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.value.details() or "")
    assert health(server.target) == SERVING


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_http_join_key_beyond_int64_is_invalid_argument(server: ServeProcess, value: int) -> None:
    answer = httpx.post(f"{server.http_url}/v1/online-features", timeout=5,
                        json={"features": CITY, "entities": {"driver_id": [1001, value]}})
    assert answer.status_code == 400, answer.text
    assert error_of(answer) == {
        "code": "INVALID_ARGUMENT",
        "message": f"join key 'driver_id' takes Int64 values, {value} is out of its range",
    }


STRING_KEYS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

named = Entity("named", join_keys=["name"])
names = FeatureView("names", entities=[named], schema=[Field("w", Int64)],
                    source=ParquetSource("names_src", path="data/names.parquet", timestamp_field="ts"))
"""


def test_string_join_key_that_is_not_unicode_is_invalid_argument(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # JSON may escape a lone surrogate ("\\ud800"); it has no UTF-8 form, so no key can hold it.
    table = pa.table({"name": ["a"], "ts": pa.array([datetime.now(UTC)], TZ), "w": pa.array([1], pa.int64())})
    store = make_store(tmp_path / "repo", STRING_KEYS, {"names.parquet": table}, project="strkeys")
    with pytest.raises(InvalidRequestError, match="join key 'name' holds '\\\\ud800'"):
        store.get_online_features(["names:w"], {"name": ["a", "\ud800"]})

    server = ServeProcess(store.config.repo, redis_server.url).start()
    try:
        answer = post_raw(server, b'{"features": ["names:w"], "entities": {"name": ["a", "\\ud800"]}}')
        assert answer.status_code == 400, answer.text
        assert error_of(answer) == {
            "code": "INVALID_ARGUMENT",
            "message": "join key 'name' holds '\\ud800', which is not valid Unicode text",
        }
        answer = httpx.post(f"{server.http_url}/v1/online-features", timeout=5,
                            json={"features": ["names:w"], "entities": {"name": ["a", "b"]}})
        assert answer.json()["features"][0]["statuses"] == ["NOT_FOUND", "NOT_FOUND"]
    finally:
        server.stop()
