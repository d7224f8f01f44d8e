"""Does Redis still hold what the run state in DuckDB says it holds?

Redis can lose data without a write of ours: FLUSHALL, a restart without persistence, a
restart from an older snapshot. The watermarks would still say "up to date", so lookups
would answer NOT_FOUND while freshness and incremental runs saw nothing wrong. Two checks:

- **Markers.** Each run that completes a view records it in one Redis hash per project,
  ``{<project>}:online-epoch``: field = view, value = the store's epoch (kept in DuckDB,
  ``OnlineState.ensure_epoch``). A missing hash or field, or another store's epoch, means the view's
  values are gone. The run sets the fields only if a field of its own, set before its first
  write, is still there at the end: a flush during the run leaves the view unmarked.
- **A sample of known keys.** Entities that have a row below the watermark, in a file
  ingested before the run that set it, and within the TTL, must have a key in Redis; a sample
  of them is checked with EXISTS. This finds a partial loss that left the markers in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import pyarrow as pa
import redis

from featurestore.catalog import table_exists
from featurestore.definitions import FeatureView
from featurestore.offline.layout import EVENT_TS, FILE_ID, view_table
from featurestore.online.keys import encode_keys
from featurestore.online.state import Watermark
from featurestore.storage import quote

# Known keys an incremental run checks per view before trusting its watermark.
RUN_SAMPLE = 100

# Sets the markers of the views a run completed, if the run's own field (set before its first
# write) survived: KEYS[1] = the hash, ARGV[1] = the run's field, ARGV[2] = the epoch, ARGV[3..]
# = views. Returns 1 if marked, 0 if Redis lost the hash during the run.
_MARK = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
return 1
"""


def marker_key(project: str) -> str:
    """The project's marker hash; never a view key (those hold ``project:`` inside the braces)."""
    return "{" + project + "}:online-epoch"


def begin_writes(client: redis.Redis, project: str, run_id: int) -> None:
    """Before a run's first write: its field, which a flush during the run takes away."""
    client.hset(marker_key(project), f"run:{run_id}", "1")


def mark_written(client: redis.Redis, project: str, run_id: int, epoch: str, views: Sequence[str]) -> bool:
    """After a run's writes: mark ``views`` as held under ``epoch``; False if Redis lost data meanwhile."""
    return bool(client.eval(_MARK, 1, marker_key(project), f"run:{run_id}", epoch, *views))


def end_writes(client: redis.Redis, project: str, run_id: int) -> None:
    """A run that failed removes its field (a killed one leaves it; it is never read)."""
    client.hdel(marker_key(project), f"run:{run_id}")


def unmarked(client: redis.Redis, project: str, views: Sequence[str], epoch: str | None) -> dict[str, str]:
    """View -> why Redis does not hold it, for each of ``views`` whose marker is not ``epoch``."""
    if not views:
        return {}
    marks = client.hmget(marker_key(project), list(views))
    out = {}
    for view, mark in zip(views, marks, strict=True):
        if mark is None or epoch is None:
            out[view] = (
                "online data lost: Redis has no marker of the run that wrote it "
                "(flushed, or restarted without persistence)"
            )
        elif (mark if isinstance(mark, str) else mark.decode()) != epoch:
            out[view] = "online data lost: Redis holds another store's values for this project"
    return out


def known_keys(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    mark: Watermark,
    now: datetime,
    sample: int,
) -> list[str]:
    """Up to ``sample`` keys that Redis must hold, chosen at random among the view's entities."""
    if sample <= 0 or not table_exists(con, project, "offline_" + view.name):
        return []
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


def missing(client: redis.Redis, keys: Sequence[str]) -> int:
    """How many of ``keys`` Redis does not hold (one pipelined EXISTS per key)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return sum(1 for found in pipe.execute() if not found)


def partly_lost(
    con: duckdb.DuckDBPyConnection,
    client: redis.Redis,
    project: str,
    view: FeatureView,
    mark: Watermark,
    now: datetime,
    sample: int,
) -> tuple[int, int]:
    """(known keys checked, of them missing from Redis)."""
    keys = known_keys(con, project, view, mark, now, sample)
    return len(keys), missing(client, keys) if keys else 0


def partial_loss_reason(checked: int, lost: int) -> str:
    return f"online data partly lost: {lost} of {checked} sampled keys known offline are missing from Redis"
