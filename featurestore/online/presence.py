"""Does Redis still hold what the run state in DuckDB says it holds?

Redis can lose data without a write of ours: FLUSHALL, a restart without persistence, a
restart from an older snapshot. The watermarks would still say "up to date", so lookups
would answer NOT_FOUND while freshness and incremental runs saw nothing wrong. Two checks:

- **Markers** (``OnlineStore`` reads and writes them). Each run that completes a view records
  it in one Redis hash per project, ``{<project>}:online-epoch`` (keys.py): field = view,
  value = the store's epoch (kept in DuckDB, ``OnlineState.ensure_epoch``). A missing hash or
  field, or another store's epoch, means the view's values are gone. The run sets the
  fields only if a field of its own, set before its first write, is still there at the end:
  a flush during the run leaves the view unmarked.

  On a Redis Cluster one hash would live on one master: another master restarted empty would
  lose its slots' values and leave the marker standing. So a cluster keeps the same hash once
  per hash slot (16384 of them, ``slot_marker_keys``, about 2 MB per project) and a view is
  marked only if every one says so: whichever master loses its data, its slots' markers go
  with it, and a resharding moves each marker with its slot. Replication keeps a master's
  writes in order, so a promoted replica that holds a marker holds the values written before
  it. The cost: three pipelined passes over 16384 hashes per run (~0.3-0.5 s each on a local
  3-master cluster), and one per check.
- **A sample of known keys.** Entities that have a row below the watermark, in a file
  ingested before the run that set it, and within the TTL, must have a key in Redis; a sample
  of them is read back (``OnlineStore.missing``). This finds a partial loss that left the markers in place.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from featurestore.catalog import table_exists
from featurestore.definitions import FeatureView
from featurestore.offline.layout import EVENT_TS, FILE_ID, view_table
from featurestore.online.keys import encode_keys
from featurestore.online.state import Watermark
from featurestore.online.store import OnlineStore
from featurestore.storage import quote

# Known keys an incremental run checks per view before trusting its watermark.
RUN_SAMPLE = 100


def known_keys(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    mark: Watermark,
    now: datetime,
    sample: int,
) -> list[str]:
    """Up to ``sample`` keys that Redis must hold, chosen at random among the view's entities."""
    if sample <= 0 or view.aggregations or not table_exists(con, project, "offline_" + view.name):
        return []  # an aggregation view's values expire with their windows: absence proves nothing
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    where = [f"{EVENT_TS} < ?"]
    params: list[object] = [mark.watermark]
    if view.ttl is not None:  # older values expire (an hour after the TTL): not looked for
        where.append(f"{EVENT_TS} >= ?")
        params.append(now - view.ttl)
    # Files ingested after the run may hold late rows of new entities: not written yet.
    files = f"SELECT file_id FROM {quote(project)}.offline_files WHERE view = ? AND ingested_at < ?"
    where.append(f"{FILE_ID} IN ({files})")
    params += [view.name, mark.run_started_at]
    rows = con.sql(
        f"SELECT * FROM (SELECT DISTINCT {keys} FROM {view_table(project, view.name)} "
        f"WHERE {' AND '.join(where)}) USING SAMPLE reservoir({int(sample)} ROWS)",
        params=params,
    ).to_arrow_table()
    if rows.num_rows == 0:
        return []
    columns: list[tuple[str, pa.Array]] = [
        (k.name, rows.column(k.name).combine_chunks()) for k in view.join_keys
    ]
    return [str(k) for k in encode_keys(project, view.name, columns).to_pylist()]


def partly_lost(
    con: duckdb.DuckDBPyConnection,
    store: OnlineStore,
    view: FeatureView,
    mark: Watermark,
    now: datetime,
    sample: int,
) -> tuple[int, int]:
    """(known keys checked, of them missing from Redis)."""
    keys = known_keys(con, store.project, view, mark, now, sample)
    return len(keys), store.missing(keys) if keys else 0


def partial_loss_reason(checked: int, lost: int) -> str:
    return f"online data partly lost: {lost} of {checked} sampled keys known offline are missing from Redis"
