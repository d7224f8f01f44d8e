"""Retention for ``featurestore gc``: which runs' values Redis still serves, read with SCAN;
the run bookkeeping itself is deleted by ``featurestore.runs.retention`` (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb
import redis

from featurestore.online.codec import HEADER
from featurestore.online.state import OnlineState
from featurestore.runs.materialization import MaterializationRunState
from featurestore.runs.retention import DEFAULT_KEEP_RUNS, TABLES, GcResult
from featurestore.runs.retention import collect as collect_runs

__all__ = ["DEFAULT_KEEP_RUNS", "TABLES", "GcResult", "collect", "needs_redis", "served_run_ids"]


def needs_redis(con: duckdb.DuckDBPyConnection, project: str) -> bool:
    """Whether any materialization run is recorded (only then do served values matter)."""
    return MaterializationRunState(con, project).any()


def served_run_ids(client: redis.Redis, project: str, batch: int = 1000) -> set[int]:
    """The materialization runs that wrote a value Redis holds for ``project`` (every key read)."""
    found: set[int] = set()
    keys: list[bytes] = []

    def read(chunk: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.getrange(key, 0, HEADER.size - 1)
        for header in pipe.execute(raise_on_error=False):  # a key of another type: not a value
            if isinstance(header, bytes) and len(header) == HEADER.size:  # not expired meanwhile
                found.add(HEADER.unpack(header)[2])

    for key in client.scan_iter(match="{" + project + ":*}:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            read(keys)
            keys = []
    if keys:
        read(keys)
    return found


def collect(
    con: duckdb.DuckDBPyConnection,
    project: str,
    served: Iterable[int],
    training_sets: Iterable[dict[str, Any]],
    keep_runs: int = DEFAULT_KEEP_RUNS,
) -> GcResult:
    """Delete the bookkeeping rows no kept run needs; the runs Redis serves and the runs behind
    each view's watermark are kept whatever their age."""
    pinned = set(served) | OnlineState(con, project).watermark_run_ids()
    return collect_runs(con, project, pinned, training_sets, keep_runs)
