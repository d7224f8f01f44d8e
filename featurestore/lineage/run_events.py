"""OpenLineage events of materialization runs, read back from the run records once a run ended.

(Ingestion runs announce themselves as they end, see ``runs.ingestion.IngestionRuns``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb

from featurestore.runs import MATERIALIZE, run_name
from featurestore.runs.materialization import MaterializationRunState
from featurestore.runs.sources import RunSourceState

if TYPE_CHECKING:  # the OpenLineage client loads only when events are emitted
    from featurestore.lineage.openlineage import LineageEvents


def emit_materialization(
    con: duckdb.DuckDBPyConnection, project: str, run_id: int, views: Sequence[str], events: LineageEvents
) -> None:
    """One OpenLineage event for a finished materialization run, its source files as inputs."""
    outcome = MaterializationRunState(con, project).outcome(run_id)
    if outcome is None:
        return
    started_at, finished_at, status, error = outcome
    paths = RunSourceState(con, project).paths(MATERIALIZE, run_id)
    events.run(
        "materialize",
        run_name(MATERIALIZE, run_id),
        started_at,
        finished_at,
        status,
        [events.file(p) for p in paths] + [events.offline_table(v) for v in views],
        [events.online_view(v) for v in views],
        error,
    )
