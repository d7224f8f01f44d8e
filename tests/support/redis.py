"""A real redis-server for tests, free ports, and one way to snapshot a Redis database."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import redis
import redis.cluster

from featurestore.online.codec import RUN_ID_BYTES

# One Redis or a cluster: the dump helpers below take either.
RedisClient = redis.Redis | redis.cluster.RedisCluster

# A feature value's run id (in its header) differs between otherwise equal runs.
_RUN_ID = RUN_ID_BYTES
# The end of the project's marker hashes (online/presence.py; one per slot on a cluster),
# which hold no value.
MARKER = b"}:online-epoch"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server process on a loopback port, started and stopped by the tests."""

    def __init__(self, port: int, workdir: Path, *args: str) -> None:
        self.port = port
        self.workdir = workdir
        self.args = args  # more redis-server options (e.g. --requirepass)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def value_keys(client: RedisClient) -> list[bytes]:
    """Every key but the project's marker hash (online/presence.py): one per (entity, view)."""
    return [k for k in client.scan_iter(count=5000) if not k.endswith(MARKER)]


def keys_matching(client: RedisClient, pattern: str) -> list[bytes]:
    """The keys matching ``pattern``, sorted, on every master of a cluster too (redis-py sends
    KEYS to one node of a cluster only; SCAN goes to every primary)."""
    return sorted(client.scan_iter(match=pattern, count=5000))


def redis_dump(client: RedisClient, keep_run_id: bool = False) -> dict[bytes, tuple[bytes, int]]:
    """Every value key (not the project's marker): its value and absolute expiry in ms (-1: none).

    A string's value is its bytes, without a feature value's run id unless ``keep_run_id``
    (so two equal runs compare equal); another type's is Redis's DUMP serialization.
    """
    keys = value_keys(client)
    out: dict[bytes, tuple[bytes, int]] = {}
    for i in range(0, len(keys), 5000):
        chunk = keys[i : i + 5000]
        pipe = client.pipeline(transaction=False)
        for k in chunk:
            pipe.type(k)
        kinds = pipe.execute()
        for k, kind in zip(chunk, kinds, strict=True):
            if kind == b"string":
                pipe.get(k)
            else:
                pipe.dump(k)
            pipe.pexpiretime(k)
        replies = pipe.execute()
        for j, (k, kind) in enumerate(zip(chunk, kinds, strict=True)):
            value = replies[2 * j]
            if kind == b"string" and not keep_run_id:
                value = value[: _RUN_ID.start] + value[_RUN_ID.stop :]
            out[k] = (value, int(replies[2 * j + 1]))
    return out
