"""Names in the offline store's DuckDB schema: each view's table and its reserved columns.

Only names: the tables themselves are owned by ``offline_store.OfflineStore``. The
point-in-time join, materialization and monitoring build their queries with these names.
"""

from __future__ import annotations

from featurestore.definitions import FeatureView
from featurestore.storage import quote

# Reserved columns of an ingested view table; user columns never start with "__".
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
SEQ = "__seq"  # ingestion order: file id << 32 | row number in the file; the last tie-breaker
FILE_ID = "__file_id"


def stored_columns(view: FeatureView) -> list[tuple[str, str, bool]]:
    """(name, DuckDB type, required) of each column of a view's ingested rows, in order: join
    keys, the reserved columns, features. The DuckDB engine's table and the Spark engine's
    view over its warehouse both have exactly these."""
    columns = [(k.name, k.dtype.duckdb, True) for k in view.join_keys]
    columns += [(EVENT_TS, "TIMESTAMPTZ", True), (CREATED_TS, "TIMESTAMPTZ", False)]
    columns += [(SEQ, "BIGINT", True), (FILE_ID, "INTEGER", True)]
    return columns + [(f.name, f.dtype.duckdb, False) for f in view.columns]


def view_table(project: str, view: str) -> str:
    return f"{quote(project)}.{quote('offline_' + view)}"


def retracted_table(project: str, view: str) -> str:
    """Keys whose rows a changed or removed source file took away, until Redis is corrected."""
    return f"{quote(project)}.{quote('retracted_' + view)}"
