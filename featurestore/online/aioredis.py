"""A lean asyncio Redis client for the serving hot path: one pipelined connection on hiredis.

redis.asyncio spends most of a lookup's time in its own machinery (a connection pool, a lock
and a parser object per command); a lookup is one MGET, so that overhead dominated the gRPC
path (see benchmarks/RESULTS.md). Here every caller writes its command to one shared
connection and awaits a future; replies come back in order (Redis answers a connection's
commands in sequence), so concurrent lookups pipeline for free. It speaks only what serving
needs (MGET, PING, AUTH, SELECT, and READONLY for a cluster's replicas) and raises redis-py's
exception classes, so callers handle one set of errors; an error reply (a cluster's MOVED or
ASK too) is a ``redis.ResponseError`` carrying the reply's text. Materialization and the CLI
keep using redis-py. A Redis Cluster is one of these per node (aiocluster.py), which writes
several commands at once with ``submit``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any

import hiredis
import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

Reply = Any  # bytes | int | list[Reply] | None, as hiredis parses it
Command = tuple[bytes | str | int, ...]


class _Protocol(asyncio.Protocol):
    """Feeds bytes to hiredis and resolves the oldest waiting future per complete reply."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        # (future, monotonic send time) in send order; Redis answers in the same order.
        self.pending: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            future, _ = pending.popleft()
            if future.done():  # its caller gave up (deadline); the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(redis.ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = redis.ConnectionError(f"connection lost: {exc}" if exc else "connection closed")
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(self.lost)


class AsyncRedis:
    """MGET and PING over one pipelined connection, reconnecting after a failure."""

    def __init__(
        self, url: str, connect_timeout: float = 2.0, socket_timeout: float = 5.0, readonly: bool = False
    ) -> None:
        self._params = parse_url(url)
        self._readonly = readonly  # a cluster replica's connection: READONLY, so it serves reads
        self._connect_timeout = connect_timeout
        # A connection whose oldest unanswered command is older than this is presumed dead
        # (a stopped or partitioned Redis keeps TCP open) and is dropped, as redis-py would.
        self._socket_timeout = socket_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def mget(self, keys: list[bytes] | list[str]) -> list[bytes | None]:
        reply: list[bytes | None] = await self.execute(b"MGET", *keys)
        return reply

    async def ping(self) -> bool:
        return bool(await self.execute(b"PING") == b"PONG")

    async def execute(self, *args: bytes | str | int) -> Reply:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.transport is None:
            protocol = await self._connect()
        elif protocol.pending and time.monotonic() - protocol.pending[0][1] > self._socket_timeout:
            protocol.transport.abort()  # fails everything pending (on the next loop turn)
            self._protocol = None  # and the next call reconnects
            raise redis.TimeoutError(f"Redis did not answer within {self._socket_timeout:g} s")
        return await self._send(protocol, args)

    def submit(self, *commands: Command) -> list[asyncio.Future[Reply]] | None:
        """Write the commands now, in one write (one system call, however many), and return
        their replies' futures without awaiting anything; None when there is no connection yet
        (``connect`` first). No other caller's command comes between them."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.transport is None:
            return None
        now = time.monotonic()
        if protocol.pending and now - protocol.pending[0][1] > self._socket_timeout:
            protocol.transport.abort()
            self._protocol = None
            raise redis.TimeoutError(f"Redis did not answer within {self._socket_timeout:g} s")
        loop = asyncio.get_running_loop()
        futures = []
        for _ in commands:
            future: asyncio.Future[Reply] = loop.create_future()
            protocol.pending.append((future, now))
            futures.append(future)
        pack = hiredis.pack_command
        protocol.transport.write(b"".join([pack(args) for args in commands]))  # type: ignore[arg-type]
        return futures

    async def connect(self) -> None:
        """Open the connection unless it is open."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.transport is None:
            await self._connect()

    @staticmethod
    def _send(protocol: _Protocol, args: tuple[bytes | str | int, ...]) -> asyncio.Future[Reply]:
        assert protocol.transport is not None
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        protocol.pending.append((future, time.monotonic()))
        protocol.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]  # stub says 1-tuple
        return future

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent callers share one new connection
            current = self._protocol
            if current is not None and current.lost is None and current.transport is not None:
                return current
            opened: list[_Protocol] = []
            try:
                async with asyncio.timeout(self._connect_timeout):
                    opened.append(await self._open())
                    await self._handshake(opened[0])
            except BaseException as e:
                if opened and opened[0].transport is not None:
                    opened[0].transport.abort()
                if isinstance(e, TimeoutError):
                    timeout = self._connect_timeout
                    raise redis.TimeoutError(f"connecting to Redis timed out after {timeout:g} s") from None
                if isinstance(e, OSError):
                    raise redis.ConnectionError(f"cannot connect to Redis: {e.strerror or e}") from None
                raise
            self._protocol = opened[0]
            return opened[0]

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        p = self._params
        cls = p.get("connection_class")
        if cls is UnixDomainSocketConnection:
            _, protocol = await loop.create_unix_connection(_Protocol, p["path"])
        else:
            context = _ssl_context(p) if cls is SSLConnection else None
            host = p.get("host", "127.0.0.1")
            _, protocol = await loop.create_connection(
                _Protocol, host, p.get("port", 6379), ssl=context, server_hostname=host if context else None
            )
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        p = self._params
        if p.get("password") is not None:
            auth = [p["username"], p["password"]] if p.get("username") else [p["password"]]
            try:
                await self._send(protocol, (b"AUTH", *auth))
            except redis.ResponseError as e:
                if protocol.transport is not None:
                    protocol.transport.close()
                raise redis.AuthenticationError(str(e)) from None
        if p.get("db"):
            await self._send(protocol, (b"SELECT", int(p["db"])))
        if self._readonly:
            await self._send(protocol, (b"READONLY",))

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def _ssl_context(params: dict[str, Any]) -> ssl.SSLContext:
    # The subset of redis-py's rediss:// query parameters a serving deployment uses.
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    if params.get("ssl_cert_reqs") in ("none", "CERT_NONE", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif params.get("ssl_check_hostname") in (False, "false", "False"):
        context.check_hostname = False
    return context
