"""`featurestore serve` on a real Redis Cluster: the answers of one Redis, through a master's
failover and a reshard."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

import featurestore
from featurestore.config import load_config
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import (
    NOT_SERVING,
    SERVING,
    ServeProcess,
    from_client,
    from_http,
    health,
    lookup,
    slot_of_entity,
)
from tests.support.redis_cluster import RedisCluster

DRIVERS = [*range(1001, 1101), 1, 0, 999_999]  # 100 drivers exist (1001-1100)
CUSTOMERS = [*range(5001, 5101), 9_001, 9_002, 9_003]  # 200 customers exist (5001-5200)


def test_cluster_answers_as_one_redis(server: ServeProcess, cluster_server: ServeProcess) -> None:
    entities = {"driver_id": DRIVERS, "customer_id": CUSTOMERS}
    answers = []
    for process in (server, cluster_server):
        with featurestore.Client(process.target, timeout=5) as client:
            remote = client.get_online_features("trip_model", entities, include_run_ids=True)
        body = {"feature_service": "trip_model", "entities": entities, "include_run_ids": True}
        http = httpx.post(f"{process.http_url}/v1/online-features", json=body, timeout=5)
        assert http.status_code == 200, http.text
        answers.append((from_client(remote), from_http(http.json())))
    assert answers[1] == answers[0]
    statuses = [s for _, s, _ in answers[0][0]["avg_daily_trips"]]
    assert statuses.count("PRESENT") >= 90 and statuses[-3:] == ["NOT_FOUND"] * 3


class Lookups:
    """Lookups sent in a loop by a thread, each checked against the single Redis's answer."""

    def __init__(
        self,
        target: str,
        requests: dict[str, pb.GetOnlineFeaturesRequest],
        expected: dict[str, pb.GetOnlineFeaturesResponse],
    ) -> None:
        self.target = target
        self.requests = requests
        self.expected = expected
        self.outcomes: list[tuple[float, str, str]] = []  # (monotonic time, request, outcome)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with grpc.insecure_channel(self.target) as channel:  # no client retries: each outcome seen
            call = pb_grpc.FeatureServingStub(channel).GetOnlineFeatures
            while not self.stop.is_set():
                for name, request in self.requests.items():
                    try:
                        answer = call(request, timeout=5)
                        outcome = "ok" if answer == self.expected[name] else "WRONG"
                    except grpc.RpcError as e:
                        outcome = e.code().name
                    self.outcomes.append((time.monotonic(), name, outcome))

    def __enter__(self) -> Lookups:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def of(self, name: str, after: float = 0.0) -> list[tuple[float, str]]:
        return [(t, o) for t, n, o in self.outcomes if n == name and t >= after]


def _expected(
    server: ServeProcess, requests: dict[str, pb.GetOnlineFeaturesRequest]
) -> dict[str, pb.GetOnlineFeaturesResponse]:
    with grpc.insecure_channel(server.target) as channel:
        call = pb_grpc.FeatureServingStub(channel).GetOnlineFeatures
        return {name: call(request, timeout=5) for name, request in requests.items()}


def _watch_health(target: str, stop: threading.Event, seen: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        try:
            seen.append((time.monotonic(), health(target, timeout=1)))
        except grpc.RpcError:
            seen.append((time.monotonic(), -1))
        time.sleep(0.05)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_failover_while_serving(server: ServeProcess, served_repo: Path, own_cluster: RedisCluster) -> None:
    project = load_config(served_repo, env={}).project
    victim = own_cluster.masters()[0]

    def on_victim(join_key: str, values: range) -> list[int]:
        return [
            v
            for v in values
            if own_cluster.master_of(slot_of_entity(project, join_key, v)).port == victim.port
        ]

    def elsewhere(join_key: str, values: range) -> list[int]:
        return [
            v
            for v in values
            if own_cluster.master_of(slot_of_entity(project, join_key, v)).port != victim.port
        ]

    requests = {  # one entity of each kind per request: two slots, both on the victim or neither
        "victim": lookup(
            on_victim("driver_id", range(1001, 1101))[:1], on_victim("customer_id", range(5001, 5201))[:1]
        ),
        "other": lookup(
            elsewhere("driver_id", range(1001, 1101))[:1], elsewhere("customer_id", range(5001, 5201))[:1]
        ),
    }
    expected = _expected(server, requests)
    process = ServeProcess(served_repo, own_cluster.url).start()
    seen: list[tuple[float, int]] = []
    stop_health = threading.Event()
    watcher = threading.Thread(target=_watch_health, args=(process.target, stop_health, seen), daemon=True)
    try:
        watcher.start()
        with Lookups(process.target, requests, expected) as lookups:
            time.sleep(0.5)
            killed = time.monotonic()
            own_cluster.kill(victim.port)
            _until(
                lambda: any(o == "ok" for _, o in lookups.of("victim", killed + 0.01)),
                30,
                "victim slots answer again",
            )
            recovered = next(t for t, o in lookups.of("victim", killed + 0.01) if o == "ok")
            time.sleep(1.0)
        stop_health.set()
        watcher.join(5)
        _until(lambda: health(process.target) == SERVING, 5, "SERVING after the failover")
    finally:
        process.stop()
        stop_health.set()

    window = recovered - killed
    print(f"\nfailover window (SIGKILL -> first good answer for its slots): {window:.2f} s")
    outcomes = {o for _, _, o in lookups.outcomes}
    assert outcomes <= {"ok", "UNAVAILABLE"}, outcomes  # never a wrong value
    assert {o for _, o in lookups.of("other")} == {"ok"}  # the other masters' slots kept answering
    assert {o for t, o in lookups.of("victim") if t < killed} == {"ok"}
    assert "UNAVAILABLE" in {o for _, o in lookups.of("victim", killed)}
    assert {o for _, o in lookups.of("victim", recovered)} == {"ok"}  # recovered without a restart
    not_serving = [t for t, status in seen if status != SERVING]
    assert not_serving, "health never said NOT_SERVING while slots were uncovered"
    # Health follows a ping every 0.5 s (server.py): allow it a few beats after the lookups.
    assert all(killed <= t <= recovered + 3.0 for t in not_serving), (killed, recovered, not_serving)
    assert all(status in (SERVING, NOT_SERVING) for _, status in seen)
    # The killed master comes back as a replica of its successor: the cluster is whole again.
    own_cluster.restart(victim.port)
    own_cluster.wait_ok()


def test_resharding_while_serving(server: ServeProcess, served_repo: Path, own_cluster: RedisCluster) -> None:
    requests = {"all": lookup(DRIVERS, CUSTOMERS), "one": lookup([1050], [5050])}
    expected = _expected(server, requests)
    source, target = own_cluster.masters()[:2]
    process = ServeProcess(served_repo, own_cluster.url).start()
    try:
        with Lookups(process.target, requests, expected) as lookups:
            time.sleep(0.3)
            started = time.monotonic()
            own_cluster.reshard(source, target, 600)
            ended = time.monotonic()
            time.sleep(0.3)
    finally:
        process.stop()
    during = [o for t, _, o in lookups.outcomes if started <= t <= ended]
    assert len(during) > 20
    assert {o for _, _, o in lookups.outcomes} == {"ok"}  # no lookup failed, none was wrong
    with own_cluster.client(source.port) as c:  # lookups met the move: MOVED or ASK replies
        errors = c.info("errorstats")
    assert (
        errors.get("errorstat_MOVED", {}).get("count", 0) + errors.get("errorstat_ASK", {}).get("count", 0)
        > 0
    )
