"""Real `featurestore serve` processes for the serving tests, and ways to talk to them."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.cluster import RedisCluster as RedisPyCluster
from redis.crc import key_slot

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.online.keys import entity_tag
from featurestore.online.lookup import OnlineResult, Status
from featurestore.serving.client import OnlineResponse
from featurestore.serving.v1 import serving_pb2 as pb
from tests.support.cli import FEATURESTORE
from tests.support.redis import free_port
from tests.support.redis_cluster import RedisCluster
from tests.support.repos import ROOT
from tests.support.waiting import wait_for

SERVICE = "featurestore.serving.v1.FeatureServing"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The shared server's --max-entities (conftest's ``server``).
MAX_ENTITIES = 200


def open_store(repo: Path) -> FeatureStore:
    """An in-process store that reads only the repo's featurestore.toml (no environment)."""
    return FeatureStore(repo, config=load_config(repo, env={}))


def health(target: str, service: str = "", timeout: float = 2.0, ca: Path | None = None) -> int:
    """The server's health status; ``ca``: connect with TLS, trusting this CA certificate."""
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read_bytes()))
        if ca
        else grpc.insecure_channel(target)
    )
    with channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout).status)


def verify(ca: Path | None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: trust only ``ca`` when given."""
    return ssl.create_default_context(cafile=str(ca)) if ca else True


def process_state(pid: int) -> str | None:
    """The process's state letter from /proc ("Z" for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def children(pid: int) -> list[int]:
    """Running child processes of ``pid`` (zombies excluded)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            out.append(int(entry.name))
    return out


class ServeProcess:
    """``featurestore serve`` on free loopback ports; stderr is collected as it arrives."""

    def __init__(self, repo: Path, redis_url: str, *args: str, ca: Path | None = None) -> None:
        self.repo = repo
        self.ca = ca  # the server speaks TLS with a certificate this CA signed
        self.redis_url = redis_url
        self.args = args
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def start(self, timeout: float = 60.0, serving: bool = True) -> ServeProcess:
        """Start and wait for the "serving gRPC on" line and (``serving``) health SERVING.

        A free port can be taken by another process between ``free_port`` and the server's
        bind (other suites on a shared machine): then it starts again on new ports, up to
        three times (``grpc_port``/``http_port`` change: read them after ``start``)."""
        for attempt in range(3):
            try:
                return self._start(timeout, serving)
            except AssertionError:
                if attempt == 2 or "address already in use" not in self.stderr:
                    raise
                self.grpc_port, self.http_port = free_port(), free_port()
                self.lines = []
                self._ready = threading.Event()
        raise AssertionError("unreachable")

    def _start(self, timeout: float, serving: bool) -> ServeProcess:
        env = {**os.environ, "FEATURESTORE_REDIS_URL": self.redis_url}
        env.pop("FEATURESTORE_DEBUG", None)
        self.process = subprocess.Popen(
            [FEATURESTORE, "serve", "--repo", str(self.repo), "--grpc-port", str(self.grpc_port),
             "--http-port", str(self.http_port), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"featurestore serve did not start:\n{self.stderr}")
        # The line promises that both ports accept connections: check at once, without polling.
        try:
            health(self.target, ca=self.ca)
            httpx.get(f"{self.http_url}/healthz", timeout=5, verify=verify(self.ca))
        except (grpc.RpcError, httpx.HTTPError) as e:
            self.stop()
            raise AssertionError(f"said it serves, but does not answer: {e!r}\n{self.stderr}") from None
        if serving:
            left = deadline - time.monotonic()
            wait_for(lambda: health(self.target, ca=self.ca) == SERVING, left, "health SERVING")
        return self

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line)
            if line.startswith("serving gRPC on"):
                self._ready.set()

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); the exit code, None if never started."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in children(process.pid):
                    os.kill(pid, signal.SIGKILL)
                process.kill()
                process.wait(10)
                raise
        return process.returncode


# -- failures: what a caller reads, what the server logged --------------------------------

UNAVAILABLE_MESSAGE = re.compile(
    r"the online store is unavailable; retry later \(request id (?P<id>[0-9a-f]{12})\)"
)


def request_id(message: str) -> str:
    """The request id of the generic message a caller reads when the online store fails."""
    match = UNAVAILABLE_MESSAGE.fullmatch(message)
    assert match, message  # nothing about the Redis: not its address, not its reply
    return match["id"]


def logged_detail(server: ServeProcess, message: str) -> str:
    """What the server logged for the request that a caller's ``message`` names by its id."""
    prefix = f"request {request_id(message)} failed: "
    line = wait_for(lambda: next((x for x in server.lines if prefix in x), None), 5, f"{prefix!r} logged")
    return line.split(prefix, 1)[1].strip()


# -- one shape for the three answers: in process, gRPC client, HTTP --------------------------

Column = list[tuple[Any, str, datetime | None]]  # (value, status, event time) per entity


def _datetime(micros: int | None) -> datetime | None:
    return None if micros is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def from_in_process(result: OnlineResult) -> dict[str, Column]:
    return {
        col.name: [
            (v, Status(s).name, _datetime(t))
            for v, s, t in zip(col.values, col.statuses, col.event_ts_us, strict=True)
        ]
        for col in result.features
    }


def from_client(response: OnlineResponse) -> dict[str, Column]:
    return {
        name: list(zip(values, response.statuses[name], response.event_timestamps[name], strict=True))
        for name, values in response.columns.items()
    }


def from_http(body: dict[str, Any]) -> dict[str, Column]:
    return {
        col["name"]: [
            (v, s, None if t is None else datetime.fromisoformat(t))
            for v, s, t in zip(col["values"], col["statuses"], col["event_timestamps"], strict=True)
        ]
        for col in body["features"]
    }


def established_connections(pid: int, port: int) -> int:
    """How many established TCP connections on local ``port`` process ``pid`` holds."""
    return _established(pid, port, column=1)


def connections_to(pid: int, port: int) -> int:
    """How many established TCP connections process ``pid`` holds to remote ``port`` (a server's)."""
    return _established(pid, port, column=2)


def _established(pid: int, port: int, column: int) -> int:
    # column 1 of /proc/net/tcp is the local address, 2 the remote one ("ADDR:PORT" in hex)
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            address, state, inode = cols[column], cols[3], cols[9]
            if state == "01" and int(address.rsplit(":", 1)[1], 16) == port and inode in inodes:
                count += 1
    return count



def unread_bytes(pid: int, port: int) -> int:
    """Bytes that arrived on process ``pid``'s connections on local ``port`` and wait unread:
    a request that reached a server stopped with SIGSTOP."""
    inodes = {
        target[len("socket:["):-1]
        for target in (_readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
        if target.startswith("socket:[")
    }
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                total += int(cols[4].split(":")[1], 16)  # tx_queue:rx_queue, in hex
    return total


def listening(port: int) -> bool:
    """Whether any process listens on local TCP ``port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""

def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


# -- a Redis Cluster holding what a single Redis holds ---------------------------------------


def copy_to_cluster(source_url: str, cluster: RedisCluster) -> int:
    """Copy every key of the Redis at ``source_url`` into ``cluster`` (value and expiry, with
    DUMP/RESTORE), and wait until the replicas hold it too; how many keys."""
    source = redis.Redis.from_url(source_url)
    target = RedisPyCluster(host="127.0.0.1", port=cluster.masters()[0].port, socket_timeout=5)
    copied = 0
    for key in source.scan_iter(count=1000):
        ttl = int(source.pttl(key))
        target.restore(key, max(ttl, 0), source.dump(key), replace=True)  # type: ignore[arg-type]
        copied += 1
    source.close()
    target.close()
    for node in cluster.nodes():
        if not node.master:
            wait_replicated(cluster, node.port)
    return copied


def wait_replicated(cluster: RedisCluster, port: int, timeout: float = 10) -> None:
    """Wait until the replica at ``port`` holds everything its master was sent."""
    with cluster.client(port) as replica:

        def synced() -> bool:
            info = replica.info("replication")
            with redis.Redis(host=info["master_host"], port=info["master_port"], socket_timeout=5) as m:
                offset = int(m.info("replication")["master_repl_offset"])
            return bool(info["master_link_status"] == "up" and info["slave_repl_offset"] >= offset)

        wait_for(synced, timeout, f"replica {port} in sync")


def lookup(drivers: list[int], customers: list[int]) -> pb.GetOnlineFeaturesRequest:
    """A GetOnlineFeatures request of the trip_model service."""
    request = pb.GetOnlineFeaturesRequest(feature_service="trip_model")
    request.entities["driver_id"].int64_values.values.extend(drivers)
    request.entities["customer_id"].int64_values.values.extend(customers)
    return request


def slot_of_entity(project: str, join_key: str, value: int) -> int:
    """The cluster slot holding every view of one entity (keys.py's hash tag)."""
    return key_slot(entity_tag(project, [join_key], [value]).encode())


def readme_grpcurl_body(method: str, containing: str = "") -> str:
    """The JSON body (-d '...') of README's first grpcurl example that calls ``method`` with
    ``containing`` in its body (README has several of some methods)."""
    readme = (ROOT / "README.md").read_text()
    pattern = r"grpcurl -plaintext[^\n]*-d '([^']*)' \\\n\s*\S+ " + re.escape(f"{SERVICE}/{method}")
    found = [m.group(1) for m in re.finditer(pattern, readme) if containing in m.group(1)]
    assert found, f"README has no grpcurl example of {method} holding {containing!r}"
    return found[0]
