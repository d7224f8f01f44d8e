"""The online store of one project: the only code that talks to the key-value server.

``OnlineStore`` (blocking: materialization, in-process lookups, the CLI, monitoring) and
``AsyncOnlineStore`` (a serving process's event loop) are two classes, not one with both
faces: they never share a connection (redis-py's pool and the pipelined serving connection
differ), and a process uses one or the other. Both take keys from keys.py, the one key
layout, and call a backend (backend.py), whose module alone maps its client library's
errors to ours; what leaves here is our data or our errors.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any

from featurestore.errors import OnlineStoreUnavailable
from featurestore.online.aiocluster import AsyncRedisClusterBackend
from featurestore.online.backend import AsyncBackend, Backend, Key
from featurestore.online.cluster_backend import RedisClusterBackend
from featurestore.online.codec import HEADER, header_of
from featurestore.online.keys import marker_key, project_pattern, slot_marker_keys, view_pattern
from featurestore.online.redis_backend import SOCKET_TIMEOUT, AsyncRedisBackend, RedisBackend
from featurestore.redis_urls import is_cluster

SCAN_BATCH = 1000


def _same_lengths(keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> None:
    # Before any backend sees them: a short sequence would pair values with the wrong keys.
    if not (len(keys) == len(values) == len(expire_at_ms)):
        raise ValueError(
            f"keys, values and expiries differ in length ({len(keys)}, {len(values)}, {len(expire_at_ms)})"
        )


class OnlineStore:
    """Reads, writes, view deletion and presence markers of one project's online values."""

    def __init__(self, project: str, backend: Backend) -> None:
        self.project = project
        self.backend = backend

    @classmethod
    def connect(
        cls,
        url: str,
        project: str,
        check: bool = True,
        socket_timeout: float = SOCKET_TIMEOUT,
        client_name: str | None = None,
    ) -> OnlineStore:
        """The store at ``url`` (one Redis or a cluster); with ``check``, one whose server has
        answered a ping (on a cluster: every master, and every slot served). ``client_name``
        names its connections in Redis's CLIENT LIST (which process holds them)."""
        backend: Backend = (
            RedisClusterBackend(url, socket_timeout, client_name)
            if is_cluster(url)
            else RedisBackend(url, socket_timeout, client_name)
        )
        store = cls(project, backend)
        if check:
            try:
                store.backend.ping()
            except OnlineStoreUnavailable:
                store.close()
                raise
        return store

    # -- reads ---------------------------------------------------------------------------

    def read(self, keys: Sequence[Key]) -> list[bytes | None]:
        """Each key's stored value, in order; None where nothing is stored."""
        return self.backend.read(keys)

    def sample(self, view: str, limit: int, examine: int | None = None) -> list[bytes]:
        """Up to ``limit`` stored values of ``view`` (those that did not expire meanwhile); with
        ``examine``, only among about that many keys (fewer values for a view with few keys)."""
        keys: list[bytes] = []
        for batch in self.backend.scan(view_pattern(self.project, view), SCAN_BATCH, examine):
            keys += batch
            if len(keys) >= limit:
                break
        keys = keys[:limit] if len(keys) > limit else keys
        values: list[bytes] = []
        for start in range(0, len(keys), SCAN_BATCH):
            for value in self.backend.read(keys[start : start + SCAN_BATCH]):
                if isinstance(value, bytes) and len(value) >= HEADER.size:  # not expired, and ours
                    values.append(value)
        return values

    def served_run_ids(self) -> set[int]:
        """The materialization runs that wrote a value the store holds (every key's header read)."""
        found: set[int] = set()
        for keys in self.backend.scan(project_pattern(self.project), SCAN_BATCH):
            for header in self.backend.read_prefixes(keys, HEADER.size):
                if header is not None and len(header) == HEADER.size:  # not expired meanwhile
                    found.add(header_of(header)[2])
        return found

    def missing(self, keys: Sequence[str]) -> int:
        """How many of ``keys`` hold nothing."""
        return sum(1 for value in self.backend.read_prefixes(keys, 1) if value is None)

    # -- writes (materialization) --------------------------------------------------------

    def write(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> int:
        """Write each key unless it holds a newer value; returns how many were written."""
        _same_lengths(keys, values, expire_at_ms)
        return self.backend.write(keys, values, expire_at_ms, newer_wins=True)

    def replace(self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int]) -> None:
        """Write each key whatever it holds: for values whose newer source rows were taken away."""
        _same_lengths(keys, values, expire_at_ms)
        self.backend.write(keys, values, expire_at_ms, newer_wins=False)

    def delete(self, keys: Sequence[str]) -> int:
        """Remove the keys (entities with no row left); returns how many existed."""
        return self.backend.delete(keys)

    def delete_view(self, view: str) -> int:
        """Remove every value of ``view`` (a removed view's data); returns how many."""
        removed = 0
        for pattern in (view_pattern(self.project, view), view_pattern(self.project, view) + "@*"):
            removed += sum(self.backend.delete(keys) for keys in self.backend.scan(pattern, SCAN_BATCH))
        return removed  # the second pattern: an aggregation view's tile groups (tiles.py)

    # -- presence markers (presence.py says why) ------------------------------------------

    def _markers(self) -> Sequence[str]:
        """The marker hashes: one, or on a cluster one per hash slot (so each master holds some)."""
        return slot_marker_keys(self.project) if self.backend.CLUSTER else (marker_key(self.project),)

    def begin_writes(self, run_id: int) -> None:
        """Before a run's first write: its field, which a flush during the run takes away."""
        self.backend.set_field(self._markers(), f"run:{run_id}", "1")

    def mark_written(self, run_id: int, epoch: str, views: Sequence[str]) -> bool:
        """After a run's writes: mark ``views`` as held under ``epoch``; False if data was lost
        meanwhile (a marker hash that lost the run's field keeps its old marks)."""
        return self.backend.set_fields_if_present(self._markers(), f"run:{run_id}", views, epoch)

    def end_writes(self, run_id: int) -> None:
        """A run that failed removes its field; if the store is what failed, the stray field stays
        (it is harmless: never read)."""
        try:
            self.backend.delete_field(self._markers(), f"run:{run_id}")
        except OnlineStoreUnavailable:
            pass

    def unmarked(self, views: Sequence[str], epoch: str | None) -> dict[str, str]:
        """View -> why the store does not hold it, for each of ``views`` whose marker is not
        ``epoch`` (in any of the marker hashes)."""
        if not views:
            return {}
        marks = self.backend.get_fields(self._markers(), views)
        out = {}
        for i, view in enumerate(views):
            held = {hash_marks[i] for hash_marks in marks}
            if None in held or epoch is None:
                out[view] = (
                    "online data lost: Redis has no marker of the run that wrote it "
                    "(flushed, or restarted without persistence)"
                )
            elif held != {epoch}:
                out[view] = "online data lost: Redis holds another store's values for this project"
        return out

    # -- the connection --------------------------------------------------------------------

    def ping(self) -> None:
        self.backend.ping()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncOnlineStore:
    """What a serving process asks of the online store: reads under a deadline, and a ping."""

    def __init__(self, project: str, backend: AsyncBackend) -> None:
        self.project = project
        self.backend = backend

    @classmethod
    def connect(
        cls, url: str, project: str, wait: float = SOCKET_TIMEOUT, read_from_replicas: bool = False
    ) -> AsyncOnlineStore:
        """The store at ``url`` (connected on the first request), whose reads may wait up
        to ``wait`` seconds; on a cluster, ``read_from_replicas`` spreads reads over replicas."""
        if is_cluster(url):
            return cls(project, AsyncRedisClusterBackend(url, wait, read_from_replicas))
        return cls(project, AsyncRedisBackend(url, wait))

    def read(self, keys: Sequence[str], timeout: float) -> Coroutine[Any, Any, list[bytes | None]]:
        """Each key's stored value, in order, within ``timeout`` seconds (else OnlineStoreUnavailable)."""
        return self.backend.read(keys, timeout)  # the backend's coroutine: no frame more per lookup

    async def ping(self, timeout: float) -> None:
        await self.backend.ping(timeout)

    async def aclose(self) -> None:
        await self.backend.aclose()

