"""`featurestore serve`: gRPC and HTTP in one asyncio process, or N such processes.

With ``workers > 1`` each worker process binds the same ports with SO_REUSEPORT and the
kernel spreads connections over them, so every core serves; the parent only forwards
SIGTERM/SIGINT and waits. The kernel picks a worker once per connection (a hash of its
addresses), so a few long-lived gRPC connections can all land on one worker while the others
idle: with workers, each gRPC connection is asked to reconnect after ``max_connection_age``
(a GOAWAY; calls in flight finish, clients reconnect by themselves), and is hashed afresh.
Shutdown is graceful: health turns NOT_SERVING, in-flight requests finish (up to ``grace``
seconds), then the servers close.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import uvicorn

from featurestore.config import Config, RequestLogLimits, ServingLimits
from featurestore.errors import FeatureStoreError, OnlineStoreUnavailable
from featurestore.online.lookup import DEFAULT_MAX_ENTITIES
from featurestore.online.on_demand import DEFAULT_ON_DEMAND_TIMEOUT
from featurestore.online.push import Pusher
from featurestore.online.registry_holder import RegistryHolder
from featurestore.online.store import AsyncOnlineStore
from featurestore.secrets import mask_logs, mask_url
from featurestore.serving import auth, auth_limit, connections
from featurestore.serving.failures import Failures
from featurestore.serving.grpc_server import (
    NOT_SERVING,
    SERVICE_NAME,
    SERVING,
    FeatureServingServicer,
    HealthServicer,
    build_server,
)
from featurestore.serving.http_app import build_app
from featurestore.serving.limits import ByteBudget
from featurestore.serving.metrics import ServingMetrics, multiprocess_dir
from featurestore.serving.pushes import PushService
from featurestore.serving.request_log import RequestLog
from featurestore.serving.tls import TlsFiles

log = logging.getLogger("featurestore.serving")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    grpc_port: int = 6566
    http_port: int | None = 6567  # None: no HTTP server
    workers: int = 1
    max_entities: int = DEFAULT_MAX_ENTITIES
    redis_timeout: float = 1.0  # seconds a lookup waits for Redis before UNAVAILABLE
    registry_refresh: float = 5.0  # seconds between checks for a new registry version
    grace: float = 5.0  # seconds in-flight requests get at shutdown
    tokens: auth.Tokens | None = None  # None: no authentication (see serving/auth.py)
    tls: TlsFiles | None = None  # None: plaintext (see serving/tls.py)
    request_log: Path | None = None  # a folder: log a sample of requests there as Parquet
    request_log_sample: float = 0.01  # share of requests logged (1.0: every request, "complete")
    request_log_limits: RequestLogLimits = RequestLogLimits()  # its queue, files and disk
    limits: ServingLimits = ServingLimits()  # connections, timeouts, bytes in flight (serving/connections.py)
    # serve --ui: builds an ASGI app served under its path on the HTTP port (the web console,
    # featurestore.ui.app.mounted, given by the CLI: serving does not import the layer above it).
    # It checks tokens itself (a login cookie); everything else keeps the bearer check.
    console: tuple[str, Callable[[Config, auth.Tokens | None, ServingMetrics], Any]] | None = None
    on_demand_timeout: float = DEFAULT_ON_DEMAND_TIMEOUT  # seconds on-demand functions get per request
    # Seconds a gRPC connection lives before the server asks the client to reconnect (0: for
    # ever); None: WORKERS_CONNECTION_AGE with workers > 1, for ever with one process.
    max_connection_age: float | None = None

    @property
    def connection_age(self) -> float:
        """The gRPC connection age in seconds, 0 for none."""
        if self.max_connection_age is not None:
            return self.max_connection_age
        return WORKERS_CONNECTION_AGE if self.workers > 1 else 0.0


# Long enough that reconnecting costs nothing measurable (one handshake per connection per
# 30 s), short enough that a new worker's share evens out within minutes.
WORKERS_CONNECTION_AGE = 30.0


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # our loop owns the signals
        yield

    async def serve_here(self, host: str, port: int, sockets: list[socket.socket] | None) -> None:
        try:
            await self.serve(sockets=sockets)
        except SystemExit:  # uvicorn exits when it cannot bind; it has logged why
            raise FeatureStoreError(f"cannot serve HTTP on {host}:{port}") from None


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say so,
    # and without it every small response waits ~40 ms for the peer's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def serve_async(
    config: Config,
    options: ServeOptions,
    reuse_port: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    # One per process: a wrong token over gRPC and one over HTTP count against the same address
    # (read first: a bad FEATURESTORE_AUTH_LIMITS stops serve before anything is opened).
    limiter = auth_limit.TokenLimiter(auth_limit.limits_from_env())
    holder = RegistryHolder(config, options.max_entities, options.registry_refresh)
    limits = connections.raise_fd_limit(options.limits, 1 if options.http_port is None else 2)
    store = AsyncOnlineStore.connect(
        config.redis_url, config.project, options.redis_timeout, config.read_from_replicas
    )
    health = HealthServicer()
    healthy = False

    async def set_health(ok: bool) -> None:
        nonlocal healthy
        healthy = ok
        status = SERVING if ok else NOT_SERVING
        await health.set("", status)
        await health.set(SERVICE_NAME, status)

    async def watch_redis() -> None:  # health follows Redis: NOT_SERVING while it is down
        checked = False
        while True:
            why = ""
            try:
                await store.ping(options.redis_timeout)
                ok = True
            except OnlineStoreUnavailable as e:
                ok, why = False, e.message
            except Exception as e:  # noqa: BLE001 - any failure means not serving
                ok, why = False, f"online store {mask_url(config.redis_url)}: {type(e).__name__}: {e}"
            if ok and options.tokens is not None:  # a broken tokens file refuses every request
                why = options.tokens.problem() or ""
                ok = not why
            if ok != healthy or not (ok or checked):  # a change, or failing from the start
                if not ok:  # at start too: a wrong password would otherwise go unexplained
                    log.warning("%s; health is NOT_SERVING", why)
                elif checked:
                    log.warning("serving again (online store %s)", mask_url(config.redis_url))
                await set_health(ok)
            checked = True
            await asyncio.sleep(0.5)

    request_log = None
    if options.request_log is not None:
        request_log = RequestLog.from_limits(
            options.request_log, options.request_log_sample, options.request_log_limits
        )
    metrics = ServingMetrics(holder, config, request_log)
    budget = ByteBudget(limits.max_bytes_in_flight)  # one for both transports: they share the memory
    failures = Failures()  # one per process, so both transports log a failure once
    # Pushes write with their own blocking Redis client, in threads (serving/pushes.py).
    pushes = PushService(Pusher(config, lambda: holder.current), options.tokens is None, metrics)
    servicer = FeatureServingServicer(
        holder, store, options.redis_timeout, metrics, budget=budget, failures=failures, pushes=pushes,
        on_demand_timeout=options.on_demand_timeout,
    )
    try:
        grpc_server, grpc_port = build_server(
            servicer, health, options.grpc_port, options.host, reuse_port,
            # metrics first: it times and counts refused calls too
            [metrics.grpc_interceptor(), *auth.grpc_interceptors(options.tokens, limiter)],
            options.tls.grpc_credentials() if options.tls else None,
            [*connections.grpc_options(limits), *_age_options(options)],
        )
    except RuntimeError:  # grpc cannot bind the port (it has logged why)
        await store.aclose()
        metrics.close()
        raise FeatureStoreError(f"cannot serve gRPC on {options.host}:{options.grpc_port}") from None
    try:  # report the real state from the first request on
        await store.ping(options.redis_timeout)
        await set_health(True)
    except Exception:  # noqa: BLE001 - Redis down at start: serve, NOT_SERVING until it answers
        await set_health(False)
    await grpc_server.start()
    tasks = [asyncio.create_task(holder.refresh_forever()), asyncio.create_task(watch_redis())]

    http: _Uvicorn | None = None
    if options.http_port is not None:
        app = build_app(
            holder, store, options.redis_timeout, lambda: healthy, metrics,
            budget=budget, failures=failures, pushes=pushes, on_demand_timeout=options.on_demand_timeout,
        )
        metrics.mount(app)  # /metrics sits behind the tokens too, when there are tokens
        tls_options = options.tls.uvicorn_options() if options.tls else {}
        # metrics outside the bearer check: refused requests are counted too
        root = metrics.instrument(auth.protect_http(app, options.tokens, limiter))
        if options.console is not None:
            path, build_console = options.console
            root = _with_console(root, path, build_console(config, options.tokens, metrics))
        http = _Uvicorn(
            uvicorn.Config(
                root,
                log_level="warning", lifespan="off", access_log=False,
                **connections.http_options(limits),
                **tls_options,
            )
        )
        mask_logs("uvicorn", "uvicorn.error")  # uvicorn configured its own handlers just now
        sock = _reuse_port_socket(options.host, options.http_port) if reuse_port else None
        if sock is None:
            http.config.host, http.config.port = options.host, options.http_port
        tasks.append(
            asyncio.create_task(http.serve_here(options.host, options.http_port, [sock] if sock else None))
        )
        while not http.started and not tasks[-1].done():
            await asyncio.sleep(0.01)
        if tasks[-1].done():  # the HTTP port could not be bound: stop gRPC, then raise why
            await grpc_server.stop(None)
            for task in tasks[:2]:
                task.cancel()
            await store.aclose()
            metrics.close()
            tasks[-1].result()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Everything built so far (imported modules, the registry, the apps) lives as long as the
    # process: freeze it out of the cyclic collector's sight. Otherwise each full collection
    # walks the whole heap, 35-230 ms here under load, and every request in flight stalls
    # behind it (benchmarks/tail.py). Only what requests allocate is scanned from now on.
    # The price: the registry version loaded here holds a reference cycle (its plan cache), so
    # once a newer version replaces it, it stays in memory: one version, whatever the uptime.
    gc.freeze()
    http_at = f", HTTP on {_http_scheme(options)}://{options.host}:{options.http_port}" if http else ""
    if http and options.console is not None:
        http_at += f", console at {_http_scheme(options)}://{options.host}:{options.http_port}{options.console[0]}/"
    if on_ready:
        on_ready(
            f"serving gRPC on {options.host}:{grpc_port}{http_at} "
            f"(project {config.project}, registry version {holder.current.version}{_security(options)})"
        )
    await stop.wait()

    await health.enter_graceful_shutdown()
    if http is not None:
        http.should_exit = True
    await grpc_server.stop(options.grace)
    for task in tasks[:2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.aclose()
    await asyncio.to_thread(pushes.close)  # pushes under way finish: each is whole or refused
    await asyncio.to_thread(metrics.close)  # the request log writes what it holds


def _age_options(options: ServeOptions) -> list[tuple[str, int]]:
    """grpc core options that end each connection after its age (grpc adds +-10% jitter, so
    clients do not all reconnect at once); calls in flight get the shutdown grace to finish."""
    if options.connection_age <= 0:
        return []
    return [
        ("grpc.max_connection_age_ms", max(1, round(options.connection_age * 1000))),
        ("grpc.max_connection_age_grace_ms", max(1, round(options.grace * 1000))),
    ]


def _with_console(api: Any, path: str, console: Any) -> Any:
    """One ASGI app: requests under ``path`` to the console, every other one to ``api``."""

    async def route(scope: Any, receive: Any, send: Any) -> None:
        here = scope.get("path", "")
        if scope["type"] == "http" and (here == path or here.startswith(path + "/")):
            await console(scope, receive, send)
        else:
            await api(scope, receive, send)

    return route


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    mask_logs()


def _http_scheme(options: ServeOptions) -> str:
    return "https" if options.tls else "http"


def _security(options: ServeOptions) -> str:
    """What the ready line says about TLS and tokens (never the tokens)."""
    parts = ["TLS"] if options.tls else []
    if options.tokens:
        parts.append(f"{len(options.tokens)} bearer token(s)")
    return f"; {', '.join(parts)}" if parts else ""


def _check_ports(options: ServeOptions) -> None:
    """A port that cannot be bound is one clear error, raised before grpc's C core and uvicorn
    log raw lines of their own about it. (A port taken between this probe and the real bind
    still fails, with those lines.)"""
    for name, port in (("gRPC", options.grpc_port), ("HTTP", options.http_port)):
        if not port:
            continue
        try:
            found = socket.getaddrinfo(options.host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = found[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers bind
                if options.workers > 1:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                probe.bind(address)
        except OSError as e:
            why = (e.strerror or str(e)).lower()
            raise FeatureStoreError(f"cannot serve {name} on {options.host}:{port}: {why}") from None


def _worker(config: Config, options: ServeOptions, ready: Event) -> None:
    _configure_logging()  # a spawned process starts without the parent's logging
    asyncio.run(serve_async(config, options, reuse_port=True, on_ready=lambda _: ready.set()))


def serve(config: Config, options: ServeOptions, on_ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    _configure_logging()
    _check_ports(options)
    if options.workers <= 1:
        asyncio.run(serve_async(config, options, on_ready=on_ready))
        return
    # Fail early and clearly (missing registry) before forking workers.
    RegistryHolder(config, options.max_entities)
    with multiprocess_dir():  # the workers' metrics meet there; removed when they are done
        _run_workers(options, config, on_ready)


def _run_workers(options: ServeOptions, config: Config, on_ready: Callable[[str], None] | None) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(options.workers)]
    workers = [ctx.Process(target=_worker, args=(config, options, r), daemon=True) for r in ready]
    for w in workers:
        w.start()

    def forward(signum: int, frame: object) -> None:
        for w in workers:
            if w.is_alive() and w.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # Announce readiness only once every worker serves; if one dies starting, stop the rest.
    while not all(r.is_set() for r in ready):
        if not all(w.is_alive() for w in workers):
            forward(signal.SIGTERM, None)
            break
        time.sleep(0.02)
    if on_ready and all(r.is_set() for r in ready):
        http_at = (
            f", HTTP on {_http_scheme(options)}://{options.host}:{options.http_port}"
            if options.http_port is not None
            else ""
        )
        on_ready(
            f"serving gRPC on {options.host}:{options.grpc_port}{http_at} with {options.workers} workers"
            f"{_security(options)}"
        )
    codes = []
    for w in workers:
        w.join()
        codes.append(w.exitcode)
    if any(codes):
        sys.exit(1)
