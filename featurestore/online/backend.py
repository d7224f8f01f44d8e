"""What a key-value server must do to hold the online store: the one place a backend plugs in.

In the shape of httpx's transports: a few methods in our terms, each raising only our errors
(``OnlineStoreUnavailable``), so the module implementing a backend is the only code that
imports its client library or catches its exceptions. ``OnlineStore`` (store.py) builds keys
and values and calls these; nothing else calls a backend.

Two backends: standalone Redis (redis_backend.py) and Redis Cluster (cluster_backend.py),
whose ``read`` groups keys by slot, sends one pipelined read per node and puts the replies
back in request order; ``write`` groups keys by slot (each newer-wins script call touches
one slot) and sends one pipeline per node; ``scan`` walks every primary. Every key of one
entity shares a hash tag (keys.py). The marker methods take many hashes: a cluster keeps one
per hash slot (``CLUSTER``), so that losing any master's data shows (presence.py). The
serving face (``AsyncBackend``) has the same two: AsyncRedisBackend and, in aiocluster.py,
AsyncRedisClusterBackend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar

Key = str | bytes  # keys are built as text; SCAN hands them back as bytes


class Backend(ABC):
    """The blocking face: materialization, in-process lookups, the CLI, monitoring."""

    # Keys spread over the hash slots of several servers: markers are kept per slot.
    CLUSTER: ClassVar[bool] = False

    @abstractmethod
    def read(self, keys: Sequence[Key]) -> list[bytes | None]:
        """Each key's value, in request order; None where the key holds nothing."""

    @abstractmethod
    def read_prefixes(self, keys: Sequence[Key], size: int) -> list[bytes | None]:
        """The first ``size`` bytes of each key's value (None where it holds none, or no string)."""

    @abstractmethod
    def write(
        self, keys: Sequence[str], values: Sequence[bytes], expire_at_ms: Sequence[int], newer_wins: bool
    ) -> int:
        """Set each key (expiring at the absolute time in ms, 0: never); how many were written.
        The three sequences have the same length (OnlineStore checks).

        With ``newer_wins``, a key whose stored value is newer (by its header's event and
        created times) is left alone, atomically per key."""

    @abstractmethod
    def delete(self, keys: Sequence[Key]) -> int:
        """Remove the keys; how many existed."""

    @abstractmethod
    def scan(self, pattern: str, batch: int, examine: int | None = None) -> Iterator[list[bytes]]:
        """Every key matching the glob ``pattern``, in batches of about ``batch``; with
        ``examine``, only those among about that many keys examined (a bounded sample: matching
        a pattern goes through the whole keyspace, seconds for a sparse view at millions of keys)."""

    @abstractmethod
    def get_fields(self, keys: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
        """Fields of each hash at ``keys`` (None where absent), in order."""

    @abstractmethod
    def set_field(self, keys: Sequence[str], field: str, value: str) -> None:
        """Set one field of each hash at ``keys``."""

    @abstractmethod
    def delete_field(self, keys: Sequence[str], field: str) -> None:
        """Remove one field of each hash at ``keys``."""

    @abstractmethod
    def set_fields_if_present(
        self, keys: Sequence[str], guard: str, fields: Sequence[str], value: str
    ) -> bool:
        """Atomically for each hash at ``keys``: if its field ``guard`` is there, remove it and
        set ``fields`` to ``value``; False if it was gone from any (those are left unchanged)."""

    @abstractmethod
    def ping(self) -> None:
        """Raise OnlineStoreUnavailable unless the server answers."""

    @abstractmethod
    def close(self) -> None: ...


class AsyncBackend(ABC):
    """The event loop's face: what a serving process needs to answer lookups."""

    @abstractmethod
    async def read(self, keys: Sequence[str], timeout: float) -> list[bytes | None]:
        """``Backend.read`` within ``timeout`` seconds (else OnlineStoreUnavailable)."""

    @abstractmethod
    async def ping(self, timeout: float) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...
