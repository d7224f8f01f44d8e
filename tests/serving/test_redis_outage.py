"""Redis frozen or down while serving: UNAVAILABLE / 503 within the deadline, recovery, no leaks."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis

import featurestore
from featurestore.errors import OnlineStoreUnavailable
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import (
    NOT_SERVING,
    SERVICE,
    SERVING,
    ServeProcess,
    connections_to,
    established_connections,
    health,
    logged_detail,
    open_fds,
    open_store,
    rss_bytes,
)
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for

REDIS_TIMEOUT = 0.5
# The callers' deadline while Redis is away: the server must answer UNAVAILABLE before it
# (it waits at most REDIS_TIMEOUT), so DEADLINE_EXCEEDED or a read timeout fails the test.
# Generous: a server that waited for Redis without bound still misses it, a loaded machine not.
DEADLINE = REDIS_TIMEOUT + 20
DRIVERS = list(range(1001, 1101))
FEATURES = ["driver_stats:completed_trips_total", "driver_stats:city"]


@pytest.fixture(scope="module")
def outage_server(served_repo: Path, serving_redis: RedisServer) -> Iterator[ServeProcess]:
    process = ServeProcess(served_repo, serving_redis.url, "--redis-timeout", str(REDIS_TIMEOUT))
    try:
        yield process.start()
    finally:
        assert process.stop() == 0, process.stderr


@pytest.fixture(scope="module")
def stub(outage_server: ServeProcess) -> Iterator[Any]:
    # A bare stub: no retry policy, so one call is one attempt.
    with grpc.insecure_channel(outage_server.target) as channel:
        yield pb_grpc.FeatureServingStub(channel)


def request(drivers: list[int]) -> pb.GetOnlineFeaturesRequest:
    message = pb.GetOnlineFeaturesRequest(features=FEATURES)
    message.entities["driver_id"].CopyFrom(pb.Values(int64_values=pb.Int64List(values=drivers)))
    return message


def values(response: pb.GetOnlineFeaturesResponse) -> dict[str, list[Any]]:
    return {
        "completed_trips_total": list(response.features[0].values.int64_values.values),
        "city": list(response.features[1].values.string_values.values),
    }


def expected_values(repo: Path, drivers: list[int]) -> dict[str, list[Any]]:
    """What the server should answer, looked up in process (absent values as zero values)."""
    result = open_store(repo).get_online_features(FEATURES, {"driver_id": drivers}).to_dict()
    return {
        "completed_trips_total": [v or 0 for v in result["completed_trips_total"]],
        "city": [v or "" for v in result["city"]],
    }


def post(server: ServeProcess, drivers: list[int], timeout: float = 10) -> httpx.Response:
    body = {"features": FEATURES, "entities": {"driver_id": drivers}}
    return httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=timeout)


def assert_unavailable(stub: Any, server: ServeProcess) -> tuple[float, list[str]]:
    """One gRPC attempt and one HTTP request, each under a DEADLINE, fail as the online store being away.

    A server that waited past the deadline would show as DEADLINE_EXCEEDED or an httpx
    timeout, not UNAVAILABLE / 503. The callers read a generic message with a request id;
    returns how long the gRPC attempt took and the detail the server logged for each request.
    """
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as error:
        stub.GetOnlineFeatures(request(DRIVERS), timeout=DEADLINE)
    took = time.monotonic() - started
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value

    answer = post(server, DRIVERS, timeout=DEADLINE)
    assert answer.status_code == 503
    assert set(answer.json()) == {"error"}
    assert answer.json()["error"]["code"] == "UNAVAILABLE"
    details = [logged_detail(server, m) for m in (error.value.details(), answer.json()["error"]["message"])]
    for detail in details:
        assert detail.startswith(f"online store {server.redis_url} does not answer: "), detail
    return took, details


def health_is(server: ServeProcess, status: int) -> bool:
    http = httpx.get(f"{server.http_url}/healthz", timeout=5)
    name = "SERVING" if status == SERVING else "NOT_SERVING"
    return (
        health(server.target) == status
        and health(server.target, SERVICE) == status
        and http.status_code == (200 if status == SERVING else 503)
        and http.json()["status"] == name
    )


def test_a_frozen_redis_times_out_then_answers_correctly_again(
    outage_server: ServeProcess, stub: Any, serving_redis: RedisServer, served_repo: Path
) -> None:
    expected = expected_values(served_repo, DRIVERS)
    assert values(stub.GetOnlineFeatures(request(DRIVERS), timeout=5)) == expected
    assert serving_redis.process is not None
    serving_redis.process.send_signal(signal.SIGSTOP)
    try:
        took, messages = assert_unavailable(stub, outage_server)
        assert took >= REDIS_TIMEOUT * 0.9  # it did wait for Redis, for the configured time
        assert all(m.endswith("does not answer: timeout") for m in messages), messages
        wait_for(lambda: health_is(outage_server, NOT_SERVING), 30, "health NOT_SERVING")
    finally:
        serving_redis.process.send_signal(signal.SIGCONT)

    # Lookups cancelled mid-command must not leave replies behind for later requests.
    wait_for(lambda: stub.GetOnlineFeatures(request(DRIVERS), timeout=2), 30, "a lookup succeeds")
    for drivers in (DRIVERS[::-1], DRIVERS[:7], [1, *DRIVERS[50:60], 2], DRIVERS):
        assert values(stub.GetOnlineFeatures(request(drivers), timeout=5)) == expected_values(
            served_repo, drivers
        )
        assert post(outage_server, drivers).json()["features"][0]["values"] == [
            v or None for v in expected_values(served_repo, drivers)["completed_trips_total"]
        ]
    wait_for(lambda: health_is(outage_server, SERVING), 30, "health SERVING again")
    assert outage_server.process is not None and outage_server.process.poll() is None


def test_a_stopped_redis_fails_fast_and_a_restarted_one_serves_again(
    outage_server: ServeProcess, stub: Any, serving_redis: RedisServer, served_repo: Path
) -> None:
    expected = expected_values(served_repo, DRIVERS)
    with redis.Redis.from_url(serving_redis.url) as client:
        client.save()  # the restarted Redis loads this snapshot: same data
    serving_redis.stop()
    try:
        _, messages = assert_unavailable(stub, outage_server)
        assert all("Connect" in m for m in messages), messages  # the reason, from the Redis client
        with featurestore.Client(outage_server.target) as client:  # retries, then a typed error
            with pytest.raises(OnlineStoreUnavailable) as error:
                client.get_online_features(FEATURES, {"driver_id": DRIVERS}, timeout=DEADLINE)
            # UNAVAILABLE, not DEADLINE_EXCEEDED: the retries ended within the deadline.
            assert error.value.message.startswith("UNAVAILABLE: the online store is unavailable; retry later")
            assert "redis://" not in error.value.message
        wait_for(lambda: health_is(outage_server, NOT_SERVING), 30, "health NOT_SERVING")
        assert outage_server.process is not None and outage_server.process.poll() is None
    finally:
        serving_redis.start()

    # "Within seconds of Redis returning": wait_for's bound, not a measured time.
    wait_for(lambda: stub.GetOnlineFeatures(request(DRIVERS), timeout=2), 30, "a lookup succeeds")
    assert values(stub.GetOnlineFeatures(request(DRIVERS), timeout=5)) == expected
    answer = post(outage_server, DRIVERS)
    assert answer.status_code == 200
    assert answer.json()["features"][1]["values"] == [v or None for v in expected["city"]]
    wait_for(lambda: health_is(outage_server, SERVING), 30, "health SERVING again")
    assert outage_server.process is not None and outage_server.process.poll() is None


CYCLES = 4
BURST = 16  # concurrent gRPC calls, then as many concurrent HTTP requests, per outage
# A leak check, not a measurement: one leaked object per failed request would not show in RSS,
# but a leaked connection, buffer or task list per request or per outage grows it by MiBs.
RSS_GROWTH = 32 * 1024 * 1024


def fail_unavailable(stub: Any, http: httpx.Client) -> None:
    """A concurrent burst of gRPC calls and HTTP requests, each UNAVAILABLE within its deadline."""
    calls = [stub.GetOnlineFeatures.future(request(DRIVERS), timeout=DEADLINE) for _ in range(BURST)]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call.result()
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value
    body = {"features": FEATURES, "entities": {"driver_id": DRIVERS}}
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda _: http.post("/v1/online-features", json=body), range(BURST)))
    assert [a.status_code for a in answers] == [503] * BURST
    assert {a.json()["error"]["code"] for a in answers} == {"UNAVAILABLE"}


def test_redis_outages_leak_no_descriptors_connections_or_memory(
    outage_server: ServeProcess, stub: Any, serving_redis: RedisServer, served_repo: Path
) -> None:
    assert outage_server.process is not None
    pid = outage_server.process.pid
    expected = expected_values(served_repo, DRIVERS)
    body = {"features": FEATURES, "entities": {"driver_id": DRIVERS}}

    def serves_correctly(http: httpx.Client) -> bool:
        answer = http.post("/v1/online-features", json=body)
        trips = [v or None for v in expected["completed_trips_total"]]
        return (
            values(stub.GetOnlineFeatures(request(DRIVERS), timeout=2)) == expected
            and answer.status_code == 200
            and answer.json()["features"][0]["values"] == trips
        )

    def measure() -> tuple[int, int, int]:
        """(open descriptors, connections to Redis, RSS) once no HTTP caller is connected."""
        # The server closes a socket when it reads its caller's close: wait for that, so only
        # the gRPC channel (open throughout) and the server's own descriptors are counted.
        wait_for(lambda: established_connections(pid, outage_server.http_port) == 0, 60, "HTTP closed")
        return open_fds(pid), connections_to(pid, serving_redis.port), rss_bytes(pid)

    with redis.Redis.from_url(serving_redis.url) as client:
        client.save()  # each restarted Redis loads this snapshot: same data
    with httpx.Client(base_url=outage_server.http_url, timeout=DEADLINE) as http:
        wait_for(lambda: serves_correctly(http), 60, "correct answers before the outages")
        for _ in range(50):  # warm-up: what is allocated once is allocated now
            assert serves_correctly(http)
    fds, redis_connections, rss = measure()
    assert redis_connections == 1  # the one pipelined connection (see aioredis.py)

    with httpx.Client(base_url=outage_server.http_url, timeout=DEADLINE) as http:
        for cycle in range(CYCLES):
            serving_redis.stop()
            try:
                fail_unavailable(stub, http)
                wait_for(lambda: health_is(outage_server, NOT_SERVING), 30, f"NOT_SERVING in outage {cycle}")
                assert outage_server.process.poll() is None, outage_server.stderr
            finally:
                serving_redis.start()
            # "Serves again within seconds": a poll bound, not a speed measurement.
            wait_for(lambda: serves_correctly(http), 60, f"correct answers after outage {cycle}")
            wait_for(lambda: health_is(outage_server, SERVING), 30, f"SERVING after outage {cycle}")

    fds_after, redis_connections, rss_after = measure()
    # slack: a descriptor the runtime opens late (a log file, an epoll set)
    assert fds_after <= fds + 2, f"open descriptors: {fds} before the outages, {fds_after} after"
    assert redis_connections == 1
    grown = rss_after - rss
    assert grown < RSS_GROWTH, f"RSS grew by {grown / 2**20:.1f} MiB over {CYCLES} outages"
