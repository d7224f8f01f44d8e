"""Slow and idle clients against a real `featurestore serve`: a cap per listener, timeouts that
close them, health answering throughout, and the soft open-files limit raised at start."""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from featurestore.serving.connections import RESERVED_FDS
from tests.serving.support import SERVING, ServeProcess, established_connections, health, open_fds, wait_for
from tests.support.redis import RedisServer

CAP = 50  # connections per listener
SLOW = 3 * CAP  # clients per listener that never finish a request
TIMEOUT = "1.5"  # header and idle timeout, seconds


@pytest.fixture
def limited(
    served_repo: Path, serving_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServeProcess]:
    """A server with a small cap and short timeouts, started under the common soft limit of
    1,024 open files (as the attack found it)."""
    monkeypatch.setenv("FEATURESTORE_SERVING_MAX_CONNECTIONS", str(CAP))
    monkeypatch.setenv("FEATURESTORE_SERVING_HEADER_TIMEOUT", TIMEOUT)
    monkeypatch.setenv("FEATURESTORE_SERVING_IDLE_TIMEOUT", TIMEOUT)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # the server inherits it
    try:
        process = ServeProcess(served_repo, serving_redis.url).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield process
    finally:
        process.stop()


def _connect(port: int, n: int, data: bytes) -> list[socket.socket]:
    out = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if data:
            sock.sendall(data)
        out.append(sock)
    return out


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (end of file or reset)."""
    sock.setblocking(False)
    try:
        while chunk := sock.recv(65536):  # an answer before the close (a 400, a GOAWAY) is read past
            del chunk
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit in /proc/{pid}/limits")


def test_the_soft_open_files_limit_is_raised_at_start(limited: ServeProcess) -> None:
    assert limited.process is not None
    soft, hard = _limits(limited.process.pid)
    assert soft == hard, (soft, hard)
    assert soft >= 2 * CAP + RESERVED_FDS


def test_slow_clients_are_capped_and_closed_while_health_answers(limited: ServeProcess) -> None:
    """The attack: connections that never finish their headers (and some that stop midway
    through a body), three times the cap on each listener."""
    assert limited.process is not None
    pid = limited.process.pid
    fds_before = open_fds(pid)
    http = _connect(limited.http_port, SLOW, b"GET /healthz HTTP/1.1\r\nhost: x\r\n")  # no blank line
    bodies = _connect(
        limited.http_port, 10,
        b"POST /v1/online-features HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n{\"entities\":",
    )
    grpc_slow = _connect(limited.grpc_port, SLOW, b"PRI * HTTP/2.0\r\n")  # half the HTTP/2 preface
    # Health answers at once on HTTP, the listener full of slow clients: a new connection
    # takes the place of the one that has waited longest.
    for _ in range(5):
        response = httpx.get(f"{limited.http_url}/healthz", timeout=10)
        assert response.status_code == 200, response.text
    # Over the cap, connections were closed at once: the server never holds more than the cap.
    wait_for(lambda: sum(map(_closed, http + bodies)) >= SLOW + 10 - CAP, 30, "HTTP kept to the cap")
    wait_for(lambda: sum(map(_closed, grpc_slow)) >= SLOW - CAP, 30, "gRPC kept to the cap")
    assert established_connections(pid, limited.http_port) <= CAP
    assert established_connections(pid, limited.grpc_port) <= CAP
    # Every slow client is closed by the header timeout; then gRPC health answers too.
    wait_for(lambda: all(map(_closed, http + bodies + grpc_slow)), 60, "slow clients closed")
    assert wait_for(lambda: health(limited.target) == SERVING, 30, "gRPC health SERVING")
    for sock in http + bodies + grpc_slow:
        sock.close()
    wait_for(lambda: open_fds(pid) <= fds_before + 5, 30, "the server's descriptors released")


def test_an_idle_connection_is_closed_after_the_idle_timeout(limited: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        wait_for(lambda: _closed(sock), 30, "the idle connection closed")
