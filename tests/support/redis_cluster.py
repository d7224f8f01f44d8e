"""A real local Redis Cluster for tests: scripts/redis_cluster.sh's processes, on free ports.

Three masters and three replicas by default, with a short cluster-node-timeout so that a
failover takes seconds. The tests kill masters (SIGKILL), reshard slots and read every
node's keys through this class; they stop the cluster when done.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from tests.support.redis import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "redis_cluster.sh"


@dataclass(frozen=True)
class Node:
    id: str
    port: int
    master: bool
    master_id: str | None  # a replica's master
    slots: tuple[tuple[int, int], ...]  # a master's slot ranges, both ends inclusive


def _node_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port


class RedisCluster:
    """``nodes`` redis-server processes joined into a cluster (half masters, half replicas)."""

    def __init__(self, workdir: Path, nodes: int = 6, node_timeout_ms: int = 1000) -> None:
        self.workdir = workdir
        self.ports = [_node_port() for _ in range(nodes)]
        self.node_timeout_ms = node_timeout_ms

    @property
    def url(self) -> str:
        """The cluster's URL, with two seeds (either is enough to find the rest)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}/"

    def start(self, attempts: int = 3) -> None:
        """Start the nodes and join them. A free port can be taken between choosing it and
        binding it (by any process's outgoing connection): then new ports, a few times."""
        env = {**os.environ, "FEATURESTORE_CLUSTER_NODE_TIMEOUT": str(self.node_timeout_ms)}
        for attempt in range(attempts):
            done = subprocess.run(
                [str(SCRIPT), "start", str(self.workdir), *map(str, self.ports)],
                env=env, capture_output=True, text=True, timeout=120,
            )
            if not done.returncode:
                return
            logs = " | ".join(
                f"{port}: {log.read_text().strip().splitlines()[-1]}"
                for port in self.ports
                if (log := self.workdir / str(port) / "redis.log").is_file() and log.read_text().strip()
            )
            if attempt + 1 == attempts:
                raise RuntimeError(f"the cluster did not start: {done.stderr.strip()} (last logged: {logs})")
            self.ports = [_node_port() for _ in self.ports]

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.workdir)], check=True, capture_output=True, timeout=120)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- looking -----------------------------------------------------------------------------

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=2)

    def alive(self, port: int) -> bool:
        try:
            with self.client(port) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def nodes(self) -> list[Node]:
        """Every node as a live node sees the cluster (failed nodes left out)."""
        for port in self.ports:
            if not self.alive(port):
                continue
            with self.client(port) as c:
                parsed = c.execute_command("CLUSTER NODES")  # redis-py parses it: address -> fields
            out = []
            for address, fields in parsed.items():
                flags = fields["flags"].split(",")
                if "fail" in flags or "noaddr" in flags:
                    continue
                port_of = int(address.split("@")[0].rsplit(":", 1)[1])
                ranges = tuple((int(r[0]), int(r[-1])) for r in fields["slots"])
                master = "master" in flags
                master_id = None if master else fields["master_id"]
                out.append(Node(fields["node_id"], port_of, master, master_id, ranges))
            return out
        raise RuntimeError("no node of the cluster answers")

    def masters(self) -> list[Node]:
        return [n for n in self.nodes() if n.master and n.slots]

    def master_of(self, slot: int) -> Node:
        for node in self.masters():
            if any(lo <= slot <= hi for lo, hi in node.slots):
                return node
        raise LookupError(f"no master serves slot {slot}")

    def state_ok(self) -> bool:
        """Every live node says cluster_state:ok, and live masters serve all 16384 slots
        (right after a master dies the others still say ok: this waits out its failover)."""
        for port in self.ports:
            if not self.alive(port):
                continue
            with self.client(port) as c:
                info = c.execute_command("CLUSTER INFO")  # parsed by redis-py: a dict
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return False
        served = sum(hi - lo + 1 for m in self.masters() if self.alive(m.port) for lo, hi in m.slots)
        return served == 16384

    def wait_ok(self, timeout: float = 60) -> float:
        """Wait until ``state_ok``; the seconds it took."""
        started = time.monotonic()
        while not self.state_ok():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"cluster not ok within {timeout}s")
            time.sleep(0.05)
        return time.monotonic() - started

    # -- changing ----------------------------------------------------------------------------

    def flush(self) -> None:
        for node in self.masters():
            with self.client(node.port) as c:
                c.flushall()

    def kill(self, port: int) -> None:
        """SIGKILL one node (its data is gone unless a replica holds it)."""
        pid = int((self.workdir / str(port) / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        (self.workdir / str(port) / "redis.pid").unlink(missing_ok=True)

    def restart(self, port: int) -> None:
        """Start a killed node again with its cluster config: it rejoins (as a replica if its
        master role was taken over)."""
        subprocess.run(
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                "--dir", str(self.workdir / str(port)),
                "--pidfile", str(self.workdir / str(port) / "redis.pid"),
                "--logfile", str(self.workdir / str(port) / "redis.log"),
                "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
            ],
            check=True, capture_output=True, timeout=30,
        )
        deadline = time.monotonic() + 10
        while not self.alive(port):
            if time.monotonic() > deadline:
                raise AssertionError(f"node {port} did not restart")
            time.sleep(0.05)

    def reshard(self, source: Node, target: Node, slots: int) -> subprocess.CompletedProcess[str]:
        """Move ``slots`` slots (and their keys) from ``source`` to ``target`` with redis-cli."""
        return subprocess.run(
            [
                "redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}",
                "--cluster-from", source.id, "--cluster-to", target.id,
                "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10",
            ],
            check=True, capture_output=True, text=True, timeout=300,
        )

    def dump(self) -> dict[bytes, tuple[bytes, int]]:
        """Every key on the masters: its value (strings; hashes as sorted field pairs) and its
        absolute expiry in ms (-1: none)."""
        out: dict[bytes, tuple[bytes, int]] = {}
        for node in self.masters():
            with self.client(node.port) as c:
                for key in c.scan_iter(count=1000):
                    kind = c.type(key)
                    if kind == b"string":
                        value = c.get(key)
                    else:
                        value = repr(sorted(c.hgetall(key).items())).encode()
                    out[key] = (value or b"", int(c.execute_command("PEXPIRETIME", key)))
        return out

