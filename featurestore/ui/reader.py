"""Read-only access to the store for the console's pages, which never wait long for a writer.

DuckDB lets one process write the file or many read it. While an ingestion writes (a
materialization writes only at its start and end), a read-only open fails; a page then shows
what it last read, marked as such, instead of hanging for the CLI's default lock wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import duckdb

from featurestore.config import Config
from featurestore.errors import NotAppliedError, NotFoundError, StoreLockedError
from featurestore.registry import Snapshot, Version, make_plan
from featurestore.registry.versions import RegistryState
from featurestore.storage import connection

T = TypeVar("T")

# Seconds a page waits for a writer to let go of the file before it answers from its cache.
LOCK_TIMEOUT = 0.5
CACHE_ENTRIES = 256  # pages remembered for when the file is busy (oldest dropped first)
SNAPSHOTS = 128  # registry versions kept parsed (the oldest parsed dropped first)
BREAKING = 4096  # versions whose breaking changes are remembered (a few strings each)


@dataclass(frozen=True)
class Read(Generic[T]):
    """What a page read, when, and whether it is an earlier read (the file was busy)."""

    value: T
    read_at: datetime
    busy: bool = False


class StoreReader:
    """Opens the store read-only per read; remembers each page's last read for when it is busy."""

    def __init__(self, config: Config, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.config = config
        self.lock_timeout = lock_timeout
        self._cache: dict[Hashable, Read[object]] = {}
        self._snapshots: dict[int, Snapshot] = {}  # versions never change once written
        self._breaking: dict[int, list[str]] = {}  # nor do their breaking changes
        self._lock = threading.Lock()

    def read(self, key: Hashable, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Read[T]:
        """``fn(con)`` on a fresh read-only connection, or the last read of ``key`` if the file is busy.

        Raises StoreLockedError if the file is busy and ``key`` was never read.
        """
        if not self.config.duckdb_path.exists():
            raise NotAppliedError(
                f"nothing applied yet ({self.config.duckdb_path} does not exist): run 'featurestore apply'"
            )
        try:
            with connection(self.config.duckdb_path, read_only=True, lock_timeout=self.lock_timeout) as con:
                value = fn(con)
        except StoreLockedError:
            with self._lock:
                earlier = self._cache.get(key)
            if earlier is None:
                raise
            return Read(earlier.value, earlier.read_at, busy=True)  # type: ignore[arg-type]
        fresh = Read(value, datetime.now(UTC))
        with self._lock:
            self._cache.pop(key, None)
            self._cache[key] = fresh  # type: ignore[assignment]
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
        return fresh

    def snapshot(
        self,
        con: duckdb.DuckDBPyConnection,
        version: int | None = None,
        versions: Mapping[int, Version] | None = None,
    ) -> tuple[Version, Snapshot]:
        """A registry version's definitions (default: the latest), parsed once per version;
        ``versions`` (number -> version), when the caller has just listed them."""
        state = RegistryState(con, self.config.project)
        if versions is None:
            versions = {v.version: v for v in state.versions()}
        if not versions:
            raise NotAppliedError(
                f"nothing applied yet in project {self.config.project!r}: run 'featurestore apply'"
            )
        number = max(versions) if version is None else version
        if number not in versions:
            raise NotFoundError(f"registry version {version} does not exist (latest is {max(versions)})")
        with self._lock:
            cached = self._snapshots.get(number)
        if cached is None:
            cached = state.definitions(number)
            with self._lock:
                self._snapshots[number] = cached
                while len(self._snapshots) > SNAPSHOTS:  # a long history paged through
                    self._snapshots.pop(next(iter(self._snapshots)))
        return versions[number], cached

    def breaking(
        self, con: duckdb.DuckDBPyConnection, version: int, versions: Mapping[int, Version] | None = None
    ) -> list[str]:
        """Why registry ``version`` broke consumers of the one before (empty: it did not), worked
        out once per version: a page of 50 versions would otherwise diff 50 pairs each time."""
        with self._lock:
            known = self._breaking.get(version)
        if known is not None:
            return known
        reasons: list[str] = []
        if version > 1:
            old = self.snapshot(con, version - 1, versions)[1]
            reasons = make_plan(old, self.snapshot(con, version, versions)[1], version - 1).breaking
        with self._lock:
            self._breaking[version] = reasons
            while len(self._breaking) > BREAKING:
                self._breaking.pop(next(iter(self._breaking)))
        return reasons
