"""Retention for ``featurestore gc``: the runs to keep whatever their age (those whose values
Redis still serves, read by ``OnlineStore.served_run_ids``, and those behind each view's
watermark); the run bookkeeping itself is deleted by ``featurestore.runs.retention``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import duckdb

from featurestore.online.state import OnlineState
from featurestore.runs.materialization import MaterializationRunState
from featurestore.runs.retention import DEFAULT_KEEP_RUNS, TABLES, GcResult
from featurestore.runs.retention import collect as collect_runs

__all__ = ["DEFAULT_KEEP_RUNS", "TABLES", "GcResult", "collect", "needs_redis"]


def needs_redis(con: duckdb.DuckDBPyConnection, project: str) -> bool:
    """Whether any materialization run is recorded (only then do served values matter)."""
    return MaterializationRunState(con, project).any()


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
