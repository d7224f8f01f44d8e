"""The registry lookups answer with: loaded once, swapped when a new version is applied.

The one owner of registry refresh for lookups. In a server, requests read
``holder.current`` (one attribute read) and a background task (``refresh_forever``) checks
the DuckDB file for a newer version in a worker thread and swaps in a fully prepared
``OnlineRegistry``, so no request ever waits on the registry. In process
(``FeatureStore.get_online_features``), ``checked()`` re-checks at most every
``refresh_seconds`` on the caller's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time

from featurestore.config import Config
from featurestore.errors import FeatureStoreError, NotAppliedError, StoreLockedError
from featurestore.on_demand import OnDemandFunctions
from featurestore.online.lookup import OnlineRegistry
from featurestore.registry.versions import RegistryState
from featurestore.storage import connection

log = logging.getLogger("featurestore.serving")
REFRESH_LOCK_TIMEOUT = 1.0


def load(
    config: Config,
    max_entities: int,
    known: int | None = None,
    lock_timeout: float | None = None,
    lazy_functions: bool = False,
) -> OnlineRegistry | None:
    """The latest registry version prepared for lookups; None if it is still ``known``.

    At startup the file is waited for as long as any command waits (a writer such as an
    ingestion may hold it); a refresh waits ``REFRESH_LOCK_TIMEOUT`` and retries later.
    """
    if not config.duckdb_path.exists():
        raise NotAppliedError(
            f"nothing applied yet ({config.duckdb_path} does not exist): run 'featurestore apply'"
        )
    with connection(config.duckdb_path, read_only=True, lock_timeout=lock_timeout) as con:
        latest = RegistryState(con, config.project).latest()
        if latest is None:
            raise NotAppliedError(
                f"nothing applied yet in project {config.project!r}: run 'featurestore apply'"
            )
        if latest.version == known:
            return None
        version, snapshot = RegistryState(con, config.project).snapshot(latest.version)
        history = RegistryState(con, config.project).view_feature_lists()
    # On-demand views' functions come from the repo's code, loaded here (off a server's event
    # loop) once per registry version; in process (lazy_functions) at the first on-demand lookup.
    functions = OnDemandFunctions(config.repo, snapshot.on_demand_views, lazy=lazy_functions)
    return OnlineRegistry(config.project, snapshot, version.version, max_entities, history, functions)


class RegistryHolder:
    """The latest applied registry version, prepared for lookups, and its refresh."""

    def __init__(
        self, config: Config, max_entities: int, refresh_seconds: float = 5.0, lazy_functions: bool = False
    ) -> None:
        """``lazy_functions``: on-demand functions load at their first use, on the caller's
        thread (in process); a server loads them with the version, off its event loop."""
        self.config = config
        self.max_entities = max_entities
        self.refresh_seconds = refresh_seconds
        self.lazy_functions = lazy_functions
        loaded = load(config, max_entities, lazy_functions=lazy_functions)
        assert loaded is not None
        self.current: OnlineRegistry = loaded
        self._checked = time.monotonic()

    def checked(self) -> OnlineRegistry:
        """``current``, after looking for a newer version if the last look is ``refresh_seconds``
        old (a file locked by a writer is looked at again next time)."""
        now = time.monotonic()
        if now - self._checked > self.refresh_seconds:
            self._checked = now
            try:
                fresh = load(
                    self.config, self.max_entities, self.current.version, lazy_functions=self.lazy_functions
                )
            except StoreLockedError:
                fresh = None
            if fresh is not None:
                self.current = fresh
        return self.current

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            await self.refresh()

    async def refresh(self) -> bool:
        """Swap in a newer version if there is one; a locked or busy file is retried later."""
        try:
            fresh = await asyncio.to_thread(
                load, self.config, self.max_entities, self.current.version, REFRESH_LOCK_TIMEOUT
            )
        except FeatureStoreError as e:
            log.warning("registry refresh skipped: %s", e.message)
            return False
        except Exception:  # a bug must not end the refresh task silently; keep serving
            log.exception("registry refresh failed; still serving version %d", self.current.version)
            return False
        if fresh is None:
            return False
        log.info("registry version %d -> %d", self.current.version, fresh.version)
        self.current = fresh
        return True
