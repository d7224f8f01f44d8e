"""Run bookkeeping: the one home of what each ingestion and materialization did.

One class per kind of state, each the only code that reads and writes its tables
(the SQLMesh ``state_sync`` shape); everyone else calls their typed methods:

- ``ingestion.IngestionRunState``: ``ingestion_runs`` (and ``runs/rejected_ingestions.jsonl``)
- ``materialization.MaterializationRunState``: ``materialization_runs``
- ``sources.RunSourceState``: ``run_sources``, the files each run read or left
- ``statistics.StatisticsState``: ``feature_statistics``, per run, view and feature
- ``validation.ValidationResultState``: ``validation_results``, per ingested file
- ``retention.collect``: deletes what no kept run needs, across those tables (``featurestore gc``)
"""

from __future__ import annotations

INGEST = "ingest"
MATERIALIZE = "materialize"


def run_name(kind: str, run_id: int) -> str:
    """How a run is named to users: ``ingest-3``, ``materialize-12``."""
    return f"{kind}-{run_id}"
