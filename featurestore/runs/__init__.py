"""Run bookkeeping: the one home of what each ingestion and materialization did.

One class per kind of state, each the only code that reads and writes its tables
(the SQLMesh ``state_sync`` shape); everyone else calls their typed methods:

- ``ingestion.IngestionRunState``: ``ingestion_runs`` (and ``runs/rejected_ingestions.jsonl``)
- ``materialization.MaterializationRunState``: ``materialization_runs``
- ``sources.RunSourceState``: ``run_sources``, the files each run read or left
- ``statistics.StatisticsState``: ``feature_statistics``, per run, view and feature
- ``validation.ValidationResultState``: ``validation_results``, per ingested file
- ``training_set_records``: each training set written (files under ``STORE/training_sets/``)
- ``retention.collect``: deletes what no kept run needs, across those tables (``featurestore gc``)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

INGEST = "ingest"
MATERIALIZE = "materialize"


def run_name(kind: str, run_id: int) -> str:
    """How a run is named to users: ``ingest-3``, ``materialize-12``."""
    return f"{kind}-{run_id}"


class RunEvents(Protocol):
    """Where runs are announced (``lineage.openlineage.LineageEvents``, a layer above)."""

    def file(self, path: str) -> Any: ...

    def offline_table(self, view: str) -> Any: ...

    def online_view(self, view: str) -> Any: ...

    def run(
        self,
        job: str,
        run: str,
        started_at: datetime,
        finished_at: datetime | None,
        status: str,
        inputs: Sequence[Any] = (),
        outputs: Sequence[Any] = (),
        error: str | None = None,
    ) -> None: ...
