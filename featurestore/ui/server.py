"""Serving the console: uvicorn on a socket bound first (so port 0 names the port it got)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from featurestore.config import Config
from featurestore.errors import ConfigError
from featurestore.serving.auth import Tokens
from featurestore.serving.auth_limit import Limits
from featurestore.ui.app import build_app

if TYPE_CHECKING:
    from featurestore.serving.tls import TlsFiles


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError naming the address that cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it a page's last segment waited ~40 ms for the
    # browser's delayed acknowledgement (Nagle's algorithm).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} for the console: {e.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


class _Uvicorn(uvicorn.Server):
    """Ends on SIGINT or SIGTERM with exit status 0, as ``serve`` does: uvicorn would raise the
    signal again after shutting down, and a script that stops the console would see it fail."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class ConsoleServer:
    """The console on ``host:port`` in a thread of this process, until ``stop`` (tests, screenshots)."""

    def __init__(
        self,
        config: Config,
        tokens: Tokens | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits | None = None,
    ) -> None:
        self.sock = bind(host, port)
        self.url = address(self.sock, tls=False)
        app = build_app(config, tokens, limits=limits)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._run, name="featurestore-ui", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self.sock]))

    def start(self) -> ConsoleServer:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            threading.Event().wait(0.02)
        if not self._server.started:
            raise RuntimeError("the console did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self.sock.close()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(
    config: Config,
    host: str,
    port: int,
    tokens: Tokens | None,
    tls: TlsFiles | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the console until interrupted (``featurestore ui``)."""
    sock = bind(host, port)
    options: dict[str, Any] = tls.uvicorn_options() if tls else {}
    server = _Uvicorn(uvicorn.Config(build_app(config, tokens), log_level="warning", **options))
    if on_ready is not None:
        who = "bearer token required" if tokens else "no tokens configured: loopback clients only"
        on_ready(f"featurestore console at {address(sock, tls is not None)} ({who})")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
