"""Redis clients from a URL, and the one place Redis errors become ours.

Every call into Redis (serving, in-process lookups, materialization, freshness) runs inside
``redis_errors``: whatever redis-py or the serving client raises -- a refused connection, a
timeout, or an error reply such as BUSY (a long script), LOADING (a restarted Redis reading
its dataset) or NOAUTH (a Redis that now wants a password) -- leaves as one
``OnlineStoreUnavailable`` naming the server, never its password.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.aioredis import AsyncRedis
from featurestore.secrets import mask_url

# Short timeouts: a lookup that cannot reach Redis must fail within its deadline.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0


def sync_client(url: str, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=socket_timeout, health_check_interval=0
    )


def async_client(url: str) -> AsyncRedis:
    """The serving path's client: one pipelined connection (see aioredis.py)."""
    return AsyncRedis(url, connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT)


@contextlib.contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Map every Redis error raised inside, and a timeout waiting for Redis, to ours."""
    try:
        yield
    except (redis.RedisError, TimeoutError) as e:
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


def checked_client(url: str) -> redis.Redis:
    """A client whose server has answered a PING."""
    client = sync_client(url)
    try:
        with redis_errors(url):
            client.ping()
    except OnlineStoreUnavailable:
        client.close()
        raise
    return client
