"""The standalone Redis backend, and the one place Redis errors become ours.

Every call into Redis runs inside ``map_errors``: whatever redis-py or the serving client
(aioredis.py) raises -- a refused connection, a timeout, or an error reply such as BUSY (a
long script), LOADING (a restarted Redis reading its dataset) or NOAUTH (a Redis that now
wants a password) -- leaves as one ``OnlineStoreUnavailable`` naming the server, never its
password. The cluster's errors too (cluster_backend.py calls it): an uncovered slot, CLUSTERDOWN,
redirections without end. No other module imports redis (tests/online/test_redis_boundary.py
holds that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

import hiredis  # redis-py's parser (redis[hiredis]); it also packs commands in C
import redis

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.aioredis import AsyncRedis
from featurestore.online.backend import AsyncBackend, Backend, Key
from featurestore.secrets import mask_url

# A command as the bytes Redis reads, packed in C (the stub types its argument as a 1-tuple).
_pack = cast(Callable[[tuple[str | bytes | int, ...]], bytes], hiredis.pack_command)

# Short timeouts: a lookup that cannot reach Redis must fail within its deadline.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0

# For each key: compares the (event time, created time) header of the stored value with the
# new one and writes only if the new one is not older: an older range materialized after a
# newer one, or two overlapping runs, can never replace a newer value. Ties rewrite the same
# row, which keeps reruns idempotent. PXAT (absolute expiry) makes a retried write expire at
# the same moment as the first. KEYS = k1..kn, ARGV = v1..vn then expiry1..expiryn (ms, or
# 0 for none). Returns how many keys were written; each key's check-and-set is atomic.
NEWER_WINS = """
local n = #KEYS
local written = 0
for i = 1, n do
  local new = ARGV[i]
  local cur = redis.call('GET', KEYS[i])
  local older = false
  if cur and string.len(cur) >= 16 then
    local ce, cc = struct.unpack('<i8<i8', cur)
    local ne, nc = struct.unpack('<i8<i8', new)
    older = ce > ne or (ce == ne and cc > nc)
  end
  if not older then
    if ARGV[n + i] == '0' then
      redis.call('SET', KEYS[i], new)
    else
      redis.call('SET', KEYS[i], new, 'PXAT', ARGV[n + i])
    end
    written = written + 1
  end
end
return written
"""
# Keys per script call: amortizes the client's per-command cost, while one call blocks Redis
# only for a fraction of a millisecond. (On a Redis Cluster every key of a call must share a
# slot: see backend.py.)
KEYS_PER_CALL = 128

# KEYS[1] = the hash, ARGV[1] = the guard field, ARGV[2] = the value, ARGV[3..] = fields.
SET_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
return 1
"""


@contextlib.contextmanager
def map_errors(url: str) -> Iterator[None]:
    """Map every Redis error raised inside, and a timeout waiting for Redis, to ours."""
    try:
        yield
    except (redis.RedisError, redis.exceptions.RedisClusterException, TimeoutError) as e:
        raise unavailable(url, e) from None


def unavailable(url: str, error: Exception) -> OnlineStoreUnavailable:
    """``error`` (from Redis, or a timeout waiting for it) as OnlineStoreUnavailable."""
    shown = mask_url(url)
    code, reply = _reply(error)
    if code == "NOAUTH":
        return OnlineStoreUnavailable(
            f"online store {shown} requires a password and redis_url gives none ({reply}): "
            "set it in redis_url ([online] redis_url or FEATURESTORE_REDIS_URL)",
            config_problem=True,
        )
    if isinstance(error, redis.AuthenticationError) or code == "WRONGPASS":
        return OnlineStoreUnavailable(
            f"online store {shown} refused the credentials: {reply}", config_problem=True
        )
    if isinstance(error, (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException)):
        # Retries exhausted on a cluster (CLUSTERDOWN, an uncovered slot, MOVED/ASK or TRYAGAIN
        # again and again): a master down and not replaced yet, or slots on the move.
        return OnlineStoreUnavailable(
            f"online store {shown} (a Redis Cluster) cannot answer now: {reply or type(error).__name__} "
            "(a master down and not yet replaced by its replica, or slots being moved)"
        )
    if code:  # any other error reply: BUSY (a long script), LOADING, MASTERDOWN, OOM, ...
        return OnlineStoreUnavailable(f"online store {shown} cannot answer now: {reply}")
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in reply and "ssl_ca_certs=" not in url:
        hint = " (a private CA? name its certificate in the URL: ?ssl_ca_certs=/path/to/ca.pem)"
    return OnlineStoreUnavailable(f"online store {shown} does not answer: {reply or 'timeout'}{hint}")


def _reply(error: Exception) -> tuple[str, str]:
    """An error reply's code ("" if ``error`` is not one) and its text as Redis sent it."""
    text = str(error)
    code = getattr(error, "status_code", None)  # redis-py moves the code of replies it knows here
    if code:
        return code, f"{code} {text}"
    first = text.split(" ", 1)[0]
    return (first if isinstance(error, redis.ResponseError) and first.isupper() else ""), text


def in_batches(keys: Iterable[bytes], batch: int) -> Iterator[list[bytes]]:
    """``keys`` in lists of ``batch`` (the last one shorter)."""
    out: list[bytes] = []
    for key in keys:
        out.append(key)
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def bounded_scan(client: redis.Redis, pattern: str, batch: int, examine: int) -> Iterator[bytes]:
    """The keys matching ``pattern`` among about ``examine`` keys SCAN goes through from the start."""
    cursor, examined = 0, 0
    while True:
        count = max(1, min(batch, examine - examined))
        cursor, keys = client.scan(cursor, match=pattern, count=count)
        yield from cast(list[bytes], keys)
        examined += count
        if cursor == 0 or examined >= examine:
            return


def as_text(value: bytes | str | None) -> str | None:
    """A hash field as Redis returns it, as text."""
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend(Backend):
    """One standalone Redis (or a replica set behind one address), through redis-py."""

    def __init__(
        self, url: str, socket_timeout: float = SOCKET_TIMEOUT, client_name: str | None = None
    ) -> None:
        self.url = url
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=socket_timeout,
            health_check_interval=0,
            client_name=client_name,
        )
        self._sha: str | None = None  # NEWER_WINS, loaded on the first write

    def read(self, keys: Sequence[Key]) -> list[bytes | None]:
        if not keys:
            return []
        with map_errors(self.url):
            # The command packed in one C call: redis-py's packer encodes each key in Python
            # (~0.4 us a key, a third of a 200-key lookup's read). The connection is the pool's,
            # connected (and authenticated) by it; one that dropped meanwhile (a restarted
            # Redis) is left to redis-py's own MGET, which reconnects and retries as before.
            packed = _pack(("MGET", *keys))
            pool = self._client.connection_pool
            conn = pool.get_connection()
            try:
                conn.send_packed_command([packed])
                return cast(list[bytes | None], conn.read_response())
            except redis.ConnectionError:
                conn.disconnect()
                return cast(list[bytes | None], self._client.mget(keys))
            finally:
                pool.release(conn)

    def read_prefixes(self, keys: Sequence[Key], size: int) -> list[bytes | None]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.getrange(key, 0, size - 1)
        with map_errors(self.url):
            replies = pipe.execute(raise_on_error=False)  # a key of another type: an error, not ours
        return [r if isinstance(r, bytes) and r else None for r in replies]

    def write(
        self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int], newer_wins: bool
    ) -> int:
        with map_errors(self.url):
            if not newer_wins:
                self._replace(keys, values, expire_at_ms)
                return len(keys)
            if self._sha is None:
                self._sha = str(self._client.script_load(NEWER_WINS))
            try:
                return self._newer_wins(self._sha, keys, values, expire_at_ms)
            except redis.exceptions.NoScriptError:  # Redis restarted and lost its script cache
                self._sha = str(self._client.script_load(NEWER_WINS))
                return self._newer_wins(self._sha, keys, values, expire_at_ms)

    def _replace(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> None:
        """One SET per key in one round trip, the commands packed in C: redis-py's pipeline
        spends ~25 us of Python on each command, most of an aggregation view's writes (one SET
        per value, thousands per batch). A connection that dropped meanwhile is left to
        redis-py's pipeline, which reconnects and retries as before (a SET is idempotent)."""
        commands = [
            _pack(("SET", key, value, "PXAT", expire_at)) if expire_at else _pack(("SET", key, value))
            for key, value, expire_at in zip(keys, values, expire_at_ms, strict=True)
        ]
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([b"".join(commands)])
            error: redis.ResponseError | None = None
            for _ in commands:  # read every reply before raising: the connection stays in step
                try:
                    conn.read_response()
                except redis.ResponseError as e:
                    error = error or e
        except redis.ConnectionError:
            conn.disconnect()
            pipe = self._client.pipeline(transaction=False)
            for key, value, expire_at in zip(keys, values, expire_at_ms, strict=True):
                pipe.set(key, value, pxat=expire_at or None)
            pipe.execute()
            return
        finally:
            pool.release(conn)
        if error is not None:
            raise error

    def _newer_wins(
        self, sha: str, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]
    ) -> int:
        """One pipeline, ``KEYS_PER_CALL`` keys per script call: one round trip per write."""
        pipe = self._client.pipeline(transaction=False)
        for i in range(0, len(keys), KEYS_PER_CALL):
            chunk = slice(i, i + KEYS_PER_CALL)
            part = keys[chunk]
            pipe.evalsha(sha, len(part), *part, *values[chunk], *expire_at_ms[chunk])
        return sum(int(r) for r in pipe.execute())

    def delete(self, keys: Sequence[Key]) -> int:
        with map_errors(self.url):
            return int(self._client.unlink(*keys)) if keys else 0

    def scan(self, pattern: str, batch: int, examine: int | None = None) -> Iterator[list[bytes]]:
        with map_errors(self.url):
            keys = (
                self._client.scan_iter(match=pattern, count=batch)
                if examine is None
                else bounded_scan(self._client, pattern, batch, examine)
            )
            yield from in_batches(keys, batch)

    def get_fields(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, list(fields))
        with map_errors(self.url):
            return [[as_text(v) for v in reply] for reply in pipe.execute()]

    def set_field(self, keys: Sequence[str], field: str, value: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hset(key, field, value)
        with map_errors(self.url):
            pipe.execute()

    def delete_field(self, keys: Sequence[str], field: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hdel(key, field)
        with map_errors(self.url):
            pipe.execute()

    def set_fields_if_present(
        self, keys: Sequence[str], guard: str, fields: Sequence[str], value: str
    ) -> bool:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.eval(SET_IF_PRESENT, 1, key, guard, value, *fields)
        with map_errors(self.url):
            return all(pipe.execute())

    def ping(self) -> None:
        with map_errors(self.url):
            self._client.ping()

    def close(self) -> None:
        self._client.close()


class AsyncRedisBackend(AsyncBackend):
    """The serving path's Redis: one pipelined connection (see aioredis.py)."""

    def __init__(self, url: str, wait: float = SOCKET_TIMEOUT) -> None:
        self.url = url
        # The connection is presumed dead once its oldest command waited longer than any
        # read may wait: a server told to wait 300 s for Redis must not drop its reads at 5.
        self._client = AsyncRedis(
            url, connect_timeout=CONNECT_TIMEOUT, socket_timeout=max(SOCKET_TIMEOUT, wait)
        )

    async def read(self, keys: Sequence[str], timeout: float) -> list[bytes | None]:
        with map_errors(self.url):
            async with asyncio.timeout(timeout):  # unlike wait_for, no task per request
                return await self._client.mget(keys)  # type: ignore[arg-type]  # a list, as built

    async def ping(self, timeout: float) -> None:
        with map_errors(self.url):
            async with asyncio.timeout(timeout):
                await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()
