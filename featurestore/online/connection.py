"""Redis clients from a URL, with errors that name the server but never its password."""

from __future__ import annotations

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


def unavailable(url: str, error: Exception) -> OnlineStoreUnavailable:
    if isinstance(error, redis.AuthenticationError):
        return OnlineStoreUnavailable(f"online store {mask_url(url)} refused the credentials: {error}")
    hint = ""
    if "CERTIFICATE_VERIFY_FAILED" in str(error) and "ssl_ca_certs=" not in url:
        hint = " (a private CA? name its certificate in the URL: ?ssl_ca_certs=/path/to/ca.pem)"
    why = str(error) or "timeout"
    return OnlineStoreUnavailable(f"online store {mask_url(url)} does not answer: {why}{hint}")


def checked_client(url: str) -> redis.Redis:
    """A client whose server has answered a PING."""
    client = sync_client(url)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as e:
        # AuthenticationError is a ConnectionError: unavailable() tells them apart.
        client.close()
        raise unavailable(url, e) from None
    return client
