"""Redis answering an error reply (BUSY, NOAUTH, LOADING) while serving.

Each answers UNAVAILABLE / 503 with the JSON error on every surface, never UNKNOWN / a plain
500 with a traceback per request; the caller reads a request id, not the server's Redis
address, and the server's log has the detail under that id (a missing password once as a
configuration error). Every case is done to a real redis-server: a script that loops past
``busy-reply-threshold``, ``CONFIG SET requirepass``, and a restart that loads a dump slowly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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
from tests.serving.support import ServeProcess, logged_detail, open_store, wait_for
from tests.support.redis import RedisServer, free_port
from tests.support.repos import materialized_example_repo

FEATURES = ["driver_stats:completed_trips_total", "driver_stats:city"]
DRIVERS = [1001, 1002]  # both in the tiny data
PASSWORD = "s3cret-for-the-test"


@pytest.fixture(scope="module")
def errors_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    # Scripts answer BUSY to others after 50 ms (the default is 5 s).
    server = RedisServer(free_port(), tmp_path_factory.mktemp("errors-redis"), "--busy-reply-threshold", "50")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, errors_redis: RedisServer) -> Path:
    return materialized_example_repo(tmp_path_factory.mktemp("errors") / "repo", fresh_data, errors_redis.url)


@pytest.fixture(scope="module")
def server(repo: Path, errors_redis: RedisServer) -> Iterator[ServeProcess]:
    process = ServeProcess(repo, errors_redis.url, "--redis-timeout", "2")
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stub(server: ServeProcess) -> Iterator[Any]:
    with grpc.insecure_channel(server.target) as channel:  # a bare stub: one call is one attempt
        yield pb_grpc.FeatureServingStub(channel)


def grpc_request() -> pb.GetOnlineFeaturesRequest:
    message = pb.GetOnlineFeaturesRequest(features=FEATURES)
    message.entities["driver_id"].CopyFrom(pb.Values(int64_values=pb.Int64List(values=DRIVERS)))
    return message


def post(server: ServeProcess) -> httpx.Response:
    body = {"features": FEATURES, "entities": {"driver_id": DRIVERS}}
    return httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10)


def serves(stub: Any) -> bool:
    """A lookup that finds every entity (the data is fresh: values are present or null)."""
    response = stub.GetOnlineFeatures(grpc_request(), timeout=5)
    return all(set(col.statuses) <= {pb.PRESENT, pb.NULL_VALUE} for col in response.features)


def grpc_failure(stub: Any, server: ServeProcess) -> str:
    """One gRPC call that must fail UNAVAILABLE; the detail the server logged for it."""
    with pytest.raises(grpc.RpcError) as raw:
        stub.GetOnlineFeatures(grpc_request(), timeout=10)
    assert raw.value.code() == grpc.StatusCode.UNAVAILABLE, raw.value
    return logged_detail(server, raw.value.details())


def reply_error(call: Callable[[], object]) -> str:
    """The error ``call`` raised from Redis, "" if it succeeded."""
    try:
        call()
    except redis.RedisError as e:
        return f"{e.status_code or ''} {e}".strip()
    return ""


def assert_unavailable_everywhere(stub: Any, server: ServeProcess, detail: str) -> None:
    """gRPC, HTTP and the Python client fail as UNAVAILABLE with a request id, never UNKNOWN
    or a plain 500; the log has ``detail`` under each id and no traceback."""
    assert grpc_failure(stub, server).startswith(f"online store {server.redis_url} {detail}")
    answer = post(server)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "UNAVAILABLE"
    logged = logged_detail(server, answer.json()["error"]["message"])
    assert logged.startswith(f"online store {server.redis_url} {detail}"), logged
    with featurestore.Client(server.target) as client, pytest.raises(OnlineStoreUnavailable) as typed:
        client.get_online_features(FEATURES, {"driver_id": DRIVERS}, timeout=5)
    assert typed.value.message.startswith("UNAVAILABLE: the online store is unavailable")
    assert "Traceback" not in server.stderr, server.stderr


def test_a_busy_redis_answers_unavailable_everywhere(
    server: ServeProcess, stub: Any, errors_redis: RedisServer, repo: Path
) -> None:
    assert serves(stub)
    looping = redis.Redis.from_url(errors_redis.url)
    admin = redis.Redis.from_url(errors_redis.url)
    script = threading.Thread(target=reply_error, args=(lambda: looping.eval("while true do end", 0),))
    script.start()
    try:
        # Handshake: Redis itself says it is busy before the server is asked.
        wait_for(lambda: reply_error(admin.ping).startswith("BUSY"), 10, "Redis answers BUSY")
        assert_unavailable_everywhere(stub, server, "cannot answer now: BUSY Redis is busy running a script")
        with pytest.raises(OnlineStoreUnavailable, match="cannot answer now: BUSY") as in_process:
            open_store(repo).get_online_features(FEATURES, {"driver_id": DRIVERS})
        assert not in_process.value.config_problem
    finally:
        admin.script_kill()
        script.join(10)
        looping.close()
        admin.close()
    wait_for(lambda: serves(stub), 10, "serving again once the script is killed")


def test_a_redis_that_now_wants_a_password_is_a_configuration_error_logged_once(
    server: ServeProcess, stub: Any, errors_redis: RedisServer, repo: Path
) -> None:
    assert serves(stub)
    admin = redis.Redis.from_url(errors_redis.url)
    admin.config_set("requirepass", PASSWORD)
    # Connections opened before keep their rights: close them, so the server reconnects
    # without a password, as it would to a Redis restarted with one.
    authed = redis.Redis.from_url(errors_redis.url, password=PASSWORD)
    authed.client_kill_filter(_type="normal", skipme=True)
    try:
        detail = "requires a password and redis_url gives none (NOAUTH"
        # The server first finds its connection closed, then reconnects without a password.
        wait_for(lambda: detail in grpc_failure(stub, server), 10, "a lookup failing for the password")
        for _ in range(3):
            assert_unavailable_everywhere(stub, server, detail)
        with pytest.raises(OnlineStoreUnavailable, match="requires a password") as in_process:
            open_store(repo).get_online_features(FEATURES, {"driver_id": DRIVERS})
        assert in_process.value.config_problem
        configuration = [line for line in server.lines if "configuration error: " in line]
        assert len(configuration) == 1, configuration
        assert f"online store {server.redis_url} requires a password" in configuration[0]
        assert "set it in redis_url" in configuration[0]
    finally:
        authed.config_set("requirepass", "")
        authed.close()
        admin.close()
    wait_for(lambda: serves(stub), 10, "serving again once the password is gone")


def test_a_redis_loading_its_dataset_answers_unavailable_everywhere(
    server: ServeProcess, stub: Any, errors_redis: RedisServer, repo: Path
) -> None:
    """Last in the module: it leaves the module's Redis loading (the fixture stops it)."""
    assert serves(stub)
    with redis.Redis.from_url(errors_redis.url) as admin:
        filler = admin.pipeline(transaction=False)
        for i in range(20_000):  # enough keys that loading them slowly lasts minutes
            filler.set(f"filler:{i}", "x")
        filler.execute()
        admin.save()
    errors_redis.stop()
    # A test-only Redis setting: wait 10 ms per key loaded, answering LOADING meanwhile.
    errors_redis.args = (
        *errors_redis.args, "--key-load-delay", "10000", "--loading-process-events-interval-bytes", "1024"
    )
    errors_redis.start()
    with redis.Redis.from_url(errors_redis.url) as admin:
        wait_for(lambda: reply_error(admin.ping).startswith("LOADING"), 10, "Redis answers LOADING")
    wait_for(lambda: "LOADING" in grpc_failure(stub, server), 10, "a lookup failing as Redis loads")
    assert_unavailable_everywhere(stub, server, "cannot answer now: LOADING Redis is loading the dataset")
    with pytest.raises(OnlineStoreUnavailable, match="cannot answer now: LOADING"):
        open_store(repo).get_online_features(FEATURES, {"driver_id": DRIVERS})
