"""Names in the offline store's DuckDB schema: each view's table and its reserved columns.

Only names: the tables themselves are owned by ``offline_store.OfflineStore``. The
point-in-time join, materialization and monitoring build their queries with these names.
"""

from __future__ import annotations

from featurestore.storage import quote

# Reserved columns of an ingested view table; user columns never start with "__".
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
SEQ = "__seq"  # ingestion order: file id << 32 | row number in the file; the last tie-breaker
FILE_ID = "__file_id"


def view_table(project: str, view: str) -> str:
    return f"{quote(project)}.{quote('offline_' + view)}"


def retracted_table(project: str, view: str) -> str:
    """Keys whose rows a changed or removed source file took away, until Redis is corrected."""
    return f"{quote(project)}.{quote('retracted_' + view)}"
