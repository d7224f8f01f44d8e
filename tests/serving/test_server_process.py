"""The server process: SIGTERM is graceful (exit 0, in-flight requests answered), --workers N all
serve and all stop, a port in use is a one-line error."""

from __future__ import annotations

import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

import featurestore
from featurestore.errors import OnlineStoreUnavailable
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import (
    ServeProcess,
    children,
    established_connections,
    listening,
    open_store,
    process_state,
    unread_bytes,
)
from tests.support.cli import run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.waiting import wait_for

DRIVERS = list(range(1001, 1021))
CITY = ["driver_stats:city"]


def city_request() -> pb.GetOnlineFeaturesRequest:
    request = pb.GetOnlineFeaturesRequest(features=CITY)
    request.entities["driver_id"].CopyFrom(pb.Values(int64_values=pb.Int64List(values=DRIVERS)))
    return request


def test_sigterm_answers_the_request_in_flight_then_exits_0(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    expected = open_store(served_repo).get_online_features(CITY, {"driver_id": DRIVERS}).to_dict()["city"]
    server = ServeProcess(served_repo, serving_redis.url, "--redis-timeout", "20")
    try:
        server.start()
        assert serving_redis.process is not None
        redis_pid = serving_redis.process.pid
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.FeatureServingStub(channel)
            assert stub.GetOnlineFeatures(city_request(), timeout=5).features[0].name == "city"
            serving_redis.process.send_signal(signal.SIGSTOP)  # holds the next lookup in flight
            try:
                in_flight = stub.GetOnlineFeatures.future(city_request(), timeout=60)
                # In flight: its MGET waits, unread, at the stopped Redis.
                wait_for(lambda: unread_bytes(redis_pid, serving_redis.port), 30, "the lookup at Redis")
                server.terminate()
                # The server took the signal (it stops listening) but stays for the call in flight.
                wait_for(lambda: not listening(server.grpc_port), 30, "the gRPC port closed")
                assert server.process is not None and server.process.poll() is None  # still in its grace
                assert not in_flight.done()
            finally:
                serving_redis.process.send_signal(signal.SIGCONT)
            response = in_flight.result(timeout=30)
            assert [v or None for v in response.features[0].values.string_values.values] == expected
            assert server.wait(30) == 0, server.stderr
        assert "Traceback" not in server.stderr
    finally:
        server.stop()

    with featurestore.Client(server.target) as client, pytest.raises(OnlineStoreUnavailable):
        client.get_online_features(CITY, {"driver_id": DRIVERS}, timeout=1)


def test_workers_share_the_ports_and_sigterm_stops_them_all(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    expected = open_store(served_repo).get_online_features(CITY, {"driver_id": DRIVERS}).to_dict()["city"]
    server = ServeProcess(served_repo, serving_redis.url, "--workers", "2")
    channels: list[grpc.Channel] = []
    https: list[httpx.Client] = []
    try:
        server.start()
        assert server.process is not None
        assert server.stderr.startswith(
            f"serving gRPC on {server.target}, HTTP on {server.http_url} with 2 workers"
        )
        spawned = children(server.process.pid)
        workers = [pid for pid in spawned if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2, spawned

        # Separate connections (no shared subchannels): the kernel spreads them over the workers.
        for _ in range(16):
            channel = grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(channel)
            response = pb_grpc.FeatureServingStub(channel).GetOnlineFeatures(city_request(), timeout=10)
            assert [v or None for v in response.features[0].values.string_values.values] == expected
            http = httpx.Client(base_url=server.http_url, timeout=10)
            https.append(http)
            body = {"features": CITY, "entities": {"driver_id": DRIVERS}}
            reply = http.post("/v1/online-features", json=body)
            assert reply.status_code == 200
            assert reply.json()["features"][0]["values"] == expected
        for port in (server.grpc_port, server.http_port):
            served = {pid: established_connections(pid, port) for pid in workers}
            assert sum(served.values()) >= 16, (port, served)
            assert all(served.values()), (port, served)  # both workers serve

        # SIGTERM with the connections still open: every process ends, the parent exits 0.
        server.terminate()
        assert server.wait(60) == 0, server.stderr
        wait_for(lambda: all(process_state(pid) in (None, "Z") for pid in spawned), 30, "no process left")
    finally:
        for channel in channels:
            channel.close()
        for http in https:
            http.close()
        server.stop()
    assert "Traceback" not in server.stderr


def test_aged_connections_move_between_workers(served_repo: Path, serving_redis: RedisServer) -> None:
    # The kernel hashes each connection to one worker; a channel that never reconnects stays on
    # it. With a connection age the server sends GOAWAY, the channel reconnects from a new port
    # and is hashed afresh: one channel calling on reaches both workers, and no call fails.
    server = ServeProcess(served_repo, serving_redis.url, "--workers", "2", "--max-connection-age", "0.5")
    channel = None
    try:
        server.start()
        assert server.process is not None
        spawned = children(server.process.pid)
        workers = [pid for pid in spawned if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 2, spawned
        channel = grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pb_grpc.FeatureServingStub(channel)
        held: set[int] = set()
        failed: list[str] = []  # reconnecting must not cost a caller anything

        def both_workers_held_it() -> bool:
            for _ in range(10):
                try:
                    stub.GetOnlineFeatures(city_request(), timeout=30)
                except grpc.RpcError as e:
                    failed.append(f"{e.code()}: {e.details()}")
            held.update(pid for pid in workers if established_connections(pid, server.grpc_port))
            return len(held) == 2

        # Each reconnection stays on the same worker with probability 1/2: both within a few seconds.
        wait_for(both_workers_held_it, 120, "the channel's connection on both workers")
        assert not failed, failed
    finally:
        if channel is not None:
            channel.close()
        server.stop()
    assert "Traceback" not in server.stderr


def test_connections_age_by_default_only_with_workers() -> None:
    from featurestore.serving.server import WORKERS_CONNECTION_AGE, ServeOptions, _age_options

    assert ServeOptions().connection_age == 0 and _age_options(ServeOptions()) == []
    assert ServeOptions(workers=2).connection_age == WORKERS_CONNECTION_AGE
    assert dict(_age_options(ServeOptions(workers=2)))["grpc.max_connection_age_ms"] == 30_000
    assert _age_options(ServeOptions(workers=2, max_connection_age=0)) == []  # 0: never
    assert dict(_age_options(ServeOptions(max_connection_age=1.5))) == {
        "grpc.max_connection_age_ms": 1500, "grpc.max_connection_age_grace_ms": 5000,
    }


def test_a_port_in_use_is_one_error_line(served_repo: Path, serving_redis: RedisServer) -> None:
    env = {"FEATURESTORE_REDIS_URL": serving_redis.url}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runs = {"gRPC": (port, free_port(), "1"), "HTTP": (free_port(), port, "1"),
                "gRPC, 2 workers": (port, free_port(), "2")}
        with ThreadPoolExecutor(3) as pool:
            results = dict(zip(runs, pool.map(
                lambda ports: run_cli("serve", "--repo", str(served_repo), "--grpc-port", str(ports[0]),
                                      "--http-port", str(ports[1]), "--workers", ports[2], env=env),
                runs.values(),
            ), strict=True))
    for which, result in results.items():
        assert result.returncode == 1, result.stderr
        # Our line alone: no raw log line of grpc's C core or uvicorn before it, no traceback.
        server = which.split(",")[0]
        assert result.stderr == f"error: cannot serve {server} on 127.0.0.1:{port}: address already in use\n"


def test_the_workers_shared_http_socket_turns_nagle_off() -> None:
    # With Nagle on, uvicorn's second small write (the body after the headers) waits for the
    # client's delayed ACK: ~40 ms per response (benchmarks/tail.py --nagle shows it).
    from featurestore.serving.server import _reuse_port_socket

    listener = _reuse_port_socket("127.0.0.1", free_port())
    try:
        with socket.create_connection(listener.getsockname(), timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
