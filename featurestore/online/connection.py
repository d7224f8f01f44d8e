"""Redis clients from a URL, with errors that name the server but never its password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.aioredis import AsyncRedis

# Short timeouts: a lookup that cannot reach Redis must fail within its deadline.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def sync_client(url: str, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=socket_timeout, health_check_interval=0
    )


def async_client(url: str) -> AsyncRedis:
    """The serving path's client: one pipelined connection (see aioredis.py)."""
    return AsyncRedis(url, connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT)


def unavailable(url: str, error: Exception) -> OnlineStoreUnavailable:
    return OnlineStoreUnavailable(f"online store {redact(url)} does not answer: {error}")


def checked_client(url: str) -> redis.Redis:
    """A client whose server has answered a PING."""
    client = sync_client(url)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as e:
        client.close()
        raise unavailable(url, e) from None
    except redis.AuthenticationError as e:
        client.close()
        raise OnlineStoreUnavailable(f"online store {redact(url)} refused the credentials: {e}") from None
    return client
