"""Where the online store is: one Redis (``redis://``, ``rediss://``, ``unix://``) or a Redis
Cluster (``redis+cluster://``, ``rediss+cluster://``).

A cluster URL names one or more seed nodes, comma-separated, with the credentials and the
TLS query parameters every node shares::

    redis+cluster://[[user]:password@]host:port[,host:port...][/][?ssl_ca_certs=...]

The seeds are only where the client first asks for the slot map; the cluster's other nodes
are found from it. This is the form Lettuce and go-redis accept; redis-py takes one seed per
URL, so each node's own URL (``ClusterAddress.node_url``) is a plain ``redis://`` one. A
cluster has only database 0: a path other than ``/`` or ``/0`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from featurestore.errors import ConfigError
from featurestore.secrets import mask_url

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# The query parameters a cluster URL may carry: TLS settings, shared by every node.
CLUSTER_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def check_url(url: object) -> str:
    """``url`` if it names an online store we can reach, else ConfigError saying why."""
    if not isinstance(url, str) or not url.startswith(SINGLE_SCHEMES + CLUSTER_SCHEMES):
        shown = mask_url(url) if isinstance(url, str) else url
        raise ConfigError(
            "redis_url must start with redis://, rediss://, unix:// or (a Redis Cluster) "
            f"redis+cluster:// or rediss+cluster://, got {shown!r}"
        )
    if is_cluster(url):
        parse_cluster_url(url)
    return url


@dataclass(frozen=True)
class ClusterAddress:
    """A cluster URL taken apart."""

    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    options: tuple[tuple[str, str], ...]  # the TLS query parameters, as given

    def node_url(self, host: str, port: int) -> str:
        """One node's own URL (``redis://`` or ``rediss://``), with the shared credentials and options."""
        auth = ""
        if self.password is not None or self.username:
            user = quote(self.username or "", safe="")
            auth = f"{user}:{quote(self.password or '', safe='')}@"
        shown_host = f"[{host}]" if ":" in host else host
        query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in self.options)
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{shown_host}:{port}/0{'?' + query if query else ''}"


def parse_cluster_url(url: str) -> ClusterAddress:
    """A ``redis+cluster://`` or ``rediss+cluster://`` URL's seeds, credentials and TLS options."""
    shown = mask_url(url)
    if not is_cluster(url):
        raise ConfigError(f"not a Redis Cluster URL (redis+cluster:// or rediss+cluster://): {shown!r}")
    scheme, rest = url.split("://", 1)
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:  # no path: redis+cluster://host:port?ssl_ca_certs=...
        netloc, _, query = netloc.partition("?")
    if path not in ("", "0"):
        raise ConfigError(f"a Redis Cluster has only database 0; remove /{path} from {shown!r}")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds = tuple(_seed(part.strip(), shown) for part in hosts.split(","))
    options = tuple(parse_qsl(query, keep_blank_values=True))
    unknown = sorted({k for k, _ in options} - CLUSTER_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} in {shown!r}; a cluster URL takes {sorted(CLUSTER_OPTIONS)}"
        )
    return ClusterAddress(seeds, username, password, scheme == "rediss+cluster", options)


def _seed(part: str, shown: str) -> tuple[str, int]:
    if not part:
        raise ConfigError(f"an empty node in {shown!r}: give host:port, comma-separated")
    try:
        parsed = urlsplit(f"//{part}")
        host, port = parsed.hostname, parsed.port or 6379
    except ValueError as e:
        raise ConfigError(f"node {part!r} in {shown!r} is not host:port ({e})") from None
    if not host or parsed.username is not None or parsed.path:
        raise ConfigError(f"node {part!r} in {shown!r} is not host:port")
    return host, port
