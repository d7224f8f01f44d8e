"""The serving path's lean asyncio client, checked against redis-py on real redis-servers."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.online.aioredis import AsyncRedis
from tests.support.redis import RedisServer, free_port

T = TypeVar("T")


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A redis-server with a password and a unix socket: (tcp url without password, socket path)."""
    sock = str(tmp_path / "redis.sock")
    server = RedisServer(free_port(), tmp_path, "--requirepass", "s3cret", "--unixsocket", sock)
    server.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield server.url, sock
    server.stop()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


values = st.dictionaries(
    st.binary(min_size=1, max_size=20), st.binary(max_size=3000), min_size=1, max_size=30
)


@settings(max_examples=40, deadline=None)
@given(stored=values, missing=st.lists(st.binary(min_size=21, max_size=25), max_size=5))
def test_mget_equals_redis_py(
    redis_server: RedisServer, stored: dict[bytes, bytes], missing: list[bytes]
) -> None:
    reference = redis.Redis.from_url(redis_server.url)
    reference.flushall()
    reference.mset(stored)
    keys = list(stored) + missing
    random.Random(len(keys)).shuffle(keys)

    async def lean() -> list[bytes | None]:
        client = AsyncRedis(redis_server.url)
        try:
            return await client.mget(keys)
        finally:
            await client.aclose()

    assert _run(lean()) == reference.mget(keys)
    reference.close()


def test_concurrent_callers_each_get_their_own_reply(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    # Hundreds of lookups in flight on one connection: replies must pair with their callers.
    redis_client.mset({f"k{i}".encode(): f"v{i}".encode() for i in range(500)})

    async def main() -> list[tuple[list[int], list[bytes | None]]]:
        client = AsyncRedis(redis_server.url)
        rng = random.Random(7)

        async def one() -> tuple[list[int], list[bytes | None]]:
            ids = rng.sample(range(600), rng.randint(1, 8))  # some beyond 500: missing
            await asyncio.sleep(rng.random() / 100)
            return ids, await client.mget([f"k{i}" for i in ids])

        try:
            return await asyncio.gather(*[one() for _ in range(400)])
        finally:
            await client.aclose()

    for ids, got in _run(main()):
        assert got == [f"v{i}".encode() if i < 500 else None for i in ids]


def test_error_reply_raises_and_connection_stays_usable(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    redis_client.hset("h", "f", "1")
    redis_client.set("s", "ok")

    async def main() -> bytes | None:
        client = AsyncRedis(redis_server.url)
        try:
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await client.execute(b"GET", b"h")
            return (await client.mget([b"s"]))[0]
        finally:
            await client.aclose()

    assert _run(main()) == b"ok"


def test_password_database_and_unix_socket(locked_redis: tuple[str, str]) -> None:
    url, sock = locked_redis
    authed = url.replace("redis://", "redis://:s3cret@").replace("/0", "/3")
    reference = redis.Redis.from_url(authed)
    reference.set("x", b"db3")

    async def read(target: str) -> list[bytes | None]:
        client = AsyncRedis(target)
        try:
            return await client.mget([b"x"])
        finally:
            await client.aclose()

    assert _run(read(authed)) == [b"db3"]
    assert _run(read(f"unix://:s3cret@{sock}?db=3")) == [b"db3"]
    assert _run(read(authed.replace("/3", "/0"))) == [None]
    with pytest.raises(redis.AuthenticationError):
        _run(read(url.replace("redis://", "redis://:wrong@")))
    with pytest.raises(redis.ResponseError, match="NOAUTH"):
        _run(read(url))
    reference.close()


def test_reconnects_after_restart_and_drops_a_stalled_connection(tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        redis.Redis.from_url(server.url).set("k", "1")

        async def main() -> None:
            client = AsyncRedis(server.url, connect_timeout=0.5, socket_timeout=0.3)
            assert await client.mget([b"k"]) == [b"1"]
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)  # TCP stays open, nothing answers
            try:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await client.mget([b"k"])
                await asyncio.sleep(0.2)
                # The oldest unanswered command is now past socket_timeout: the connection goes.
                with pytest.raises(redis.TimeoutError):
                    await client.mget([b"k"])
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            assert await client.mget([b"k"]) == [b"1"]  # a fresh connection

            server.stop()
            with pytest.raises(redis.ConnectionError):
                await client.mget([b"k"])
            server.start()
            redis.Redis.from_url(server.url).set("k", "2")
            assert await client.mget([b"k"]) == [b"2"]
            await client.aclose()

        _run(main())
    finally:
        server.stop()
