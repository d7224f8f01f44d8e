"""Connections a `serve` process holds: a cap per listener, timeouts for slow and idle clients.

Without them, about a thousand clients that open a connection and never finish their
headers take every file descriptor and both servers stop answering. gRPC takes the limits
as core options (``grpc_options``); uvicorn has no header timeout and its only cap
(``limit_concurrency``) answers 503 to every request once reached, health checks
included, so HTTP gets them from a subclass of its h11 protocol (``http_protocol``). At
the HTTP cap a new connection is let in by closing the connection that has waited longest
without a request being answered (slow or idle): a probe still gets through when slow
clients fill the listener. ``raise_fd_limit`` makes sure the caps fit in the process's
file descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import replace
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from featurestore.config import ServingLimits

log = logging.getLogger("featurestore.serving")

# Descriptors kept for everything but client connections: Redis, DuckDB, logs, gRPC's own.
RESERVED_FDS = 256


def raise_fd_limit(limits: ServingLimits, listeners: int) -> ServingLimits:
    """Raise the soft limit on open files to the hard one; if the caps still do not fit,
    lower ``max_connections`` (with a warning) rather than run out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = listeners * limits.max_connections + RESERVED_FDS
    # Descriptors cost nothing until used: take all the hard limit allows (commonly 1,024 soft).
    target = max(soft, want) if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:  # a sandbox may refuse: keep the limit we have
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, e)
    if soft != resource.RLIM_INFINITY and soft < want:
        fit = max(1, (soft - RESERVED_FDS) // listeners)
        log.warning(
            "open files limit %d (hard limit %d) holds %d connections per listener, not "
            "max_connections %d: serving with %d (raise the hard limit, e.g. ulimit -Hn)",
            soft, hard, fit, limits.max_connections, fit,
        )
        return replace(limits, max_connections=fit)
    return limits


def grpc_options(limits: ServingLimits) -> list[tuple[str, int]]:
    """grpc core's own limits: connections over the cap are closed at once, a connection
    must finish its TLS and HTTP/2 handshake within ``header_timeout``, idle ones are closed."""
    return [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", limits.max_streams),
        ("grpc.server_handshake_timeout_ms", _ms(limits.header_timeout)),
        ("grpc.max_connection_idle_ms", _ms(limits.idle_timeout)),
    ]


def http_options(limits: ServingLimits) -> dict[str, Any]:
    """uvicorn.Config arguments: our protocol, and ``idle_timeout`` as its keep-alive timeout."""
    protocol = type("LimitedH11Protocol", (_LimitedH11,), {"limits": limits})
    return {"http": protocol, "timeout_keep_alive": limits.idle_timeout}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class _LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request and a cap on connections.

    The deadline runs from the moment a connection opens, or the next request's first bytes
    arrive, until the whole request (headers and body) is in; a client still sending then
    is disconnected. Between requests uvicorn's keep-alive timeout closes idle connections.
    """

    limits: ClassVar[ServingLimits]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._free_since = self.loop.time()  # when it last had no request being answered
        self._arm()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._sending():
            self._disarm()
        elif self._deadline is None:
            self._arm()

    def on_response_complete(self) -> None:
        self._free_since = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _sending(self) -> bool:
        """Whether the client is sending a request, or has sent nothing since it connected."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        return state is h11.IDLE and (self.cycle is None or bool(self.conn.trailing_data[0]))

    def _free(self) -> bool:
        """Whether no request of this connection is being answered."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._sending() and not self.transport.is_closing():
            self.transport.close()

    def _make_room(self) -> None:
        """Close the connection that has waited longest with nothing being answered, or, if
        every other one is being answered, this new one."""
        free = [
            c for c in self.connections
            if c is not self and isinstance(c, _LimitedH11) and c._free() and not c.transport.is_closing()
        ]
        victim = min(free, key=lambda c: c._free_since) if free else self
        self.connections.discard(victim)  # counted out now, not when the loop reports it closed
        victim.transport.close()
