"""Pushes for `featurestore serve`: one path for gRPC and HTTP, off the event loop.

A push writes a file with fsync and then Redis with a blocking client (``online.push.Pusher``,
the same core as ``FeatureStore.push``), so it runs in a small pool of threads of its own,
never on the event loop that answers lookups. The transports only translate the request
into an Arrow table (``push_input``) and the result or error back; errors are the core's
(``errors.py``), answered at each transport's one error boundary.

A call whose deadline passes while its push runs is answered DEADLINE_EXCEEDED, but the
push still finishes: a thread cannot be stopped halfway, and stopping between the file and
Redis would leave the very half state the core avoids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.errors import (
    FeatureStoreError,
    InvalidRequestError,
    OnlineStoreUnavailable,
    PermissionDeniedError,
    PushLogUnavailable,
    PushTargetNotFoundError,
)
from featurestore.online.push import Pusher, PushResult
from featurestore.serving.auth import LOOPBACK_ONLY, is_loopback

if TYPE_CHECKING:
    from featurestore.serving.metrics import ServingMetrics

PUSH_THREADS = 4  # pushes at once per process; more wait (their bytes stay counted meanwhile)


@dataclass(frozen=True)
class Pushed:
    result: PushResult
    registry_version: int


class PushService:
    """The pushes of one server process. ``open_to_all``: the server has no tokens, so only
    callers on loopback may push (a token's scope decides otherwise, in ``auth``)."""

    def __init__(
        self,
        pusher: Pusher,
        open_to_all: bool,
        metrics: ServingMetrics | None = None,
        threads: int = PUSH_THREADS,
    ) -> None:
        self.pusher = pusher
        self.open_to_all = open_to_all
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="featurestore-push")

    async def push(
        self, transport: str, peer: str | None, view: str, to_table: Callable[[FeatureView], pa.Table]
    ) -> Pushed:
        """Push the rows ``to_table`` builds for the view named ``view``, sent from ``peer``."""
        try:
            if self.open_to_all and not is_loopback(peer):
                raise PermissionDeniedError(LOOPBACK_ONLY)
            loop = asyncio.get_running_loop()
            pushed = await loop.run_in_executor(self.executor, self._push, view, to_table)
        except FeatureStoreError as e:
            self._count(transport, e)
            raise
        except Exception:
            if self.metrics is not None:
                self.metrics.pushed(transport, "error")
            raise
        if self.metrics is not None:
            r = pushed.result
            self.metrics.pushed(
                transport,
                "ok",
                {"written": r.written, "kept_newer": r.kept_newer, "expired": r.expired,
                 "not_online": r.rows - r.written - r.kept_newer - r.expired},
                r.view,
            )
        return pushed

    def _push(self, name: str, to_table: Callable[[FeatureView], pa.Table]) -> Pushed:
        registry = self.pusher.registry()
        view = self.pusher.view(name, registry)  # the version the answer names
        result = self.pusher.push(view, to_table(view))
        return Pushed(result, registry.version)

    def _count(self, transport: str, error: FeatureStoreError) -> None:
        if self.metrics is None:
            return
        outcome = "error"
        if isinstance(error, PermissionDeniedError):
            outcome = "denied"
        elif isinstance(error, PushTargetNotFoundError):
            outcome = "not_found"
        elif isinstance(error, InvalidRequestError):
            outcome = "invalid"
        elif isinstance(error, PushLogUnavailable):
            outcome = "offline_unavailable"
        elif isinstance(error, OnlineStoreUnavailable):
            outcome = "online_unavailable"
        self.metrics.pushed(transport, outcome)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.pusher.close()


def result_fields(pushed: Pushed) -> dict[str, Any]:
    """What both transports answer for a push."""
    r = pushed.result
    return {
        "view": r.view,
        "rows": r.rows,
        "written": r.written,
        "kept_newer": r.kept_newer,
        "expired": r.expired,
        "registry_version": pushed.registry_version,
    }
