"""What large requests may cost a real `featurestore serve`: a budget of bytes in flight (over it,
RESOURCE_EXHAUSTED / 429 at once), answers over the message limit refused before any work,
and memory handed back after a burst."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from featurestore.online.redis_backend import SOCKET_TIMEOUT
from featurestore.serving.limits import MAX_ANSWER_BYTES
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import SERVICE, ServeProcess, rss_bytes, wait_for
from tests.support.redis import RedisServer

GET = f"/{SERVICE}/GetOnlineFeatures"
NUMBERS = [
    f"driver_stats:{name}"
    for name in ("conv_rate", "acc_rate", "avg_daily_trips", "rating", "trips_today", "earnings_today",
                 "online_hours", "cancellations_7d", "completed_trips_total", "last_trip_km", "is_active")
]
HELD = list(range(1001, 1101)) * 60  # 6,000 entities of NUMBERS: 1.2 MB of answer at most
WIDE = list(range(1001, 1101)) * 3000  # 300,000 entities of NUMBERS: 17 MB of answer at least
OVER = list(range(1001, 1101)) * 2000  # 200,000: 11 MB at least, 27 MB once encoded


def _request(features: list[str], drivers: list[int]) -> pb.GetOnlineFeaturesRequest:
    request = pb.GetOnlineFeaturesRequest(features=features)
    request.entities["driver_id"].int64_values.values.extend(drivers)
    return request


def _call(target: str, request: bytes, timeout: float) -> grpc.RpcError | bytes:
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        try:
            return channel.unary_unary(GET)(request, timeout=timeout)  # type: ignore[no-any-return]
        except grpc.RpcError as e:
            return e


def _redis_round_trips(server: ServeProcess) -> float:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("featurestore_redis_duration_seconds_count"):
            return float(line.split()[-1])
    raise AssertionError("no featurestore_redis_duration_seconds_count in /metrics")


@pytest.fixture(scope="module")
def budgeted(served_repo: Path, serving_redis: RedisServer) -> Iterator[ServeProcess]:
    """A server with a 2 MiB budget (one HELD request fits, two do not), large batches
    allowed, and time to wait for Redis."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATURESTORE_SERVING_MAX_BYTES_IN_FLIGHT", "2MiB")
        process = ServeProcess(
            served_repo, serving_redis.url, "--max-entities", "400000", "--redis-timeout", "300"
        ).start()
    try:
        yield process
    finally:
        process.stop()


def test_requests_over_the_budget_are_refused_at_once(
    budgeted: ServeProcess, serving_redis: RedisServer
) -> None:
    held = _request(NUMBERS, HELD).SerializeToString()
    body = {"features": NUMBERS, "entities": {"driver_id": HELD}}
    assert serving_redis.process is not None
    with ThreadPoolExecutor(1) as pool:
        serving_redis.process.send_signal(signal.SIGSTOP)  # the first lookup stays in flight
        try:
            first = pool.submit(_call, budgeted.target, held, 600)

            def refused() -> tuple[grpc.RpcError] | None:
                # Admitted while the first is not yet in flight, a call waits for Redis: its
                # short deadline ends it, and the next try comes. If it got in first, the
                # first was the one refused: send another. (An RpcError tests false.)
                nonlocal first
                if first.done():
                    first = pool.submit(_call, budgeted.target, held, 600)
                answer = _call(budgeted.target, held, 2)
                ok = isinstance(answer, grpc.RpcError) and answer.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return (answer,) if ok else None  # type: ignore[return-value]

            (error,) = wait_for(refused, 120, "a second large request refused")
            assert "server busy" in error.details() and "max_bytes_in_flight" in error.details()
            response = httpx.post(f"{budgeted.http_url}/v1/online-features", json=body, timeout=60)
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
            assert response.headers["retry-after"] == "1"
            # Health still answers (NOT_SERVING: Redis is stopped), the first still waits, past
            # the few seconds after which a connection would otherwise be presumed dead, even
            # when a small lookup (which fits beside it) is sent to Redis after them.
            assert httpx.get(f"{budgeted.http_url}/healthz", timeout=10).status_code in (200, 503)
            time.sleep(SOCKET_TIMEOUT + 1)
            small = _call(budgeted.target, _request(NUMBERS, [1001]).SerializeToString(), 1)
            assert isinstance(small, grpc.RpcError)  # the server's wait or the caller's deadline ends it
            assert small.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
            time.sleep(1)  # a connection dropped as dead would have failed the first by now
            assert not first.done()
        finally:
            serving_redis.process.send_signal(signal.SIGCONT)
        assert isinstance(first.result(600), bytes)  # the one in flight is answered
    # The budget was given back: the same requests are answered now.
    assert isinstance(_call(budgeted.target, held, 120), bytes)
    response = httpx.post(f"{budgeted.http_url}/v1/online-features", json=body, timeout=120)
    assert response.status_code == 200, response.text


def test_an_answer_over_the_message_limit_is_refused_before_the_lookup(budgeted: ServeProcess) -> None:
    before = _redis_round_trips(budgeted)
    error = _call(budgeted.target, _request(NUMBERS, WIDE).SerializeToString(), 120)
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "would be at least 17700" in error.details()  # 59 bytes per entity at least
    assert f"over the limit of {MAX_ANSWER_BYTES}" in error.details()
    assert "fewer entities or features" in error.details()
    body = {"features": NUMBERS, "entities": {"driver_id": WIDE}}
    response = httpx.post(f"{budgeted.http_url}/v1/online-features", json=body, timeout=120)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == {"code": "RESOURCE_EXHAUSTED", "message": error.details()}
    assert _redis_round_trips(budgeted) == before  # refused before Redis was asked
    assert "Traceback" not in budgeted.stderr, budgeted.stderr[-4000:]  # whole, to diagnose


def test_an_answer_found_over_the_limit_once_encoded_is_refused_with_a_status(budgeted: ServeProcess) -> None:
    """Small enough at least, too large once the values are known: the same status and a
    message, not a failure inside grpc with a traceback."""
    error = _call(budgeted.target, _request(NUMBERS, OVER).SerializeToString(), 300)
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "the answer would be 2" in error.details()
    assert f"over the limit of {MAX_ANSWER_BYTES}" in error.details()
    assert "Traceback" not in budgeted.stderr, budgeted.stderr[-4000:]  # whole, to diagnose


def test_memory_returns_near_its_baseline_after_bursts_of_large_requests(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    """The attack: bursts of 32 concurrent 15 MiB requests (feature names, or entities with
    an unknown feature), which used to keep well over 1 GiB after each burst."""
    names = pb.GetOnlineFeaturesRequest(features=[f"nosuch_view:feature_{i:08d}" for i in range(500_000)])
    entities = _request(["nosuch_view:f"], list(range(10**15, 10**15 + 1_900_000)))
    bodies = [names.SerializeToString(), entities.SerializeToString()]
    assert all(len(b) > 14 * 1024 * 1024 for b in bodies)
    server = ServeProcess(served_repo, serving_redis.url).start()
    try:
        assert server.process is not None
        pid = server.process.pid
        baseline = rss_bytes(pid)
        with ThreadPoolExecutor(32) as pool:
            for body in bodies * 2:
                answers = list(pool.map(lambda b: _call(server.target, b, 120), [body] * 32))
                assert all(isinstance(a, grpc.RpcError) for a in answers)
                codes = {a.code() for a in answers}  # type: ignore[union-attr]
                assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        bound = baseline + 256 * 1024 * 1024
        wait_for(lambda: rss_bytes(pid) < bound, 60, f"RSS back under {bound >> 20} MiB")
        assert "Traceback" not in server.stderr
    finally:
        assert server.stop() == 0
