"""A push to an aggregation view, online: the tiles of the pushed entities, recomputed at once.

Tiles are a function of an entity's events, so a push does what an incremental
materialization does for entities with new events (``tile_writer``), over the events a
training set will see once the push is ingested: the view's ingested rows of the pushed
entities, plus the rows of every pushed file not ingested yet (this push's and earlier ones),
ordered after the ingested rows and in push order, as ingestion numbers them
(``offline/plan.py``). So a lookup right after the push serves what the training set at
``ceil(now / hop) * hop`` holds after the next ingestion, and a push also restores earlier
pushes a materialization may have overwritten meanwhile. Source files not ingested yet are
not read (ingestion validates them first): their events join at the next materialization.

The store's DuckDB file is read (read-only, a few seconds at most): while an ingestion
writes it, the push waits, and past ``LOCK_TIMEOUT`` its rows stay durable offline but are
not written online (StoreLockedError says so); the next materialization ingests and writes them.

Concurrency. Within a process, pushes to one view recompute one at a time (a lock), so the
last write holds every pushed file. Across processes (a server and a CLI, or two server
workers), two pushes of the same entity may write in the other order than they read: the
value then lacks the other push's events until the next push of that entity or the next
materialization. A materialization that lists the push log before a push and writes the
entity after it does the same; its next run ingests the file and rewrites the entity (an
incremental run rewrites entities with rows in files ingested since the last run).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.definitions import FeatureView
from featurestore.errors import StoreLockedError
from featurestore.offline.layout import CREATED_TS, EVENT_TS, SEQ
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.push_log import pushed_files
from featurestore.online.codec import PUSHED_RUN_ID, timestamps_us
from featurestore.online.keys import encode_keys
from featurestore.online.store import OnlineStore
from featurestore.online.tile_writer import write_entity_tiles
from featurestore.online.tiles import tile_groups
from featurestore.storage import connect

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NO_END = datetime(9999, 1, 1, tzinfo=UTC)
LOCK_TIMEOUT = 5.0  # seconds a push waits for an ingestion holding the store file
_locks: dict[tuple[Path, str], threading.Lock] = {}
# Pending push files' rows, read once per process: each push of a view reads them all again.
_CACHED_ROWS = 1_000_000
_ROW = "__row"
_cache: dict[tuple[str, ...], pa.Table] = {}  # (path, the view's layout) -> rows
_cached_rows = 0
_cache_lock = threading.Lock()
_locks_guard = threading.Lock()


def write_pushed_tiles(
    project: str,
    view: FeatureView,
    table: pa.Table,
    duckdb_path: Path,
    store_dir: Path,
    online: OnlineStore,
    now: datetime,
) -> int:
    """Recompute and write the tiles of the entities in ``table`` (a pushed batch, already in
    the push log); how many of its rows are in a value written."""
    with _lock(store_dir, view.name):
        try:
            con = connect(duckdb_path, read_only=True, lock_timeout=LOCK_TIMEOUT)
        except StoreLockedError as e:
            error = StoreLockedError(
                f"push to feature view {view.name!r}: the rows are durable offline but its tiles "
                f"were not recomputed online: {e.message}; the next materialization writes them"
            )
            # What a server's caller reads: the same promise, without the path and pid.
            error.client_message = (
                f"push to feature view {view.name!r}: the rows are durable offline but were not "
                "written online (the store file is held by an ingestion); the next materialization "
                "writes them, pushing them again is not needed"
            )
            raise error from e
        try:
            keys = table.select([k.name for k in view.join_keys])
            pending = _pending(con, project, view, store_dir, keys)
            # Every event, future ones too (a caller's clock ahead of ours): each lands in its
            # tile, and a lookup combines a tile once its time comes, as the online rule says.
            written = write_entity_tiles(
                con, project, view, keys, pending, _NO_END, online, PUSHED_RUN_ID, now
            )
        finally:
            con.close()
    return _rows_written(project, view, table, written, now)


def _rows_written(project: str, view: FeatureView, table: pa.Table, written: set[str], now: datetime) -> int:
    """Pushed rows whose event is in a value written: its entity's, in a group whose tiles a
    lookup from ``now`` on may combine. The others are past every window and change no value."""
    columns = [(k.name, table.column(k.name)) for k in view.join_keys]
    event_us = timestamps_us(table.column(view.source.timestamp_field))
    now_us = (now - _EPOCH) // _US
    hit = np.zeros(table.num_rows, dtype=bool)
    for group in tile_groups(view):
        in_tiles = np.ones(table.num_rows, dtype=bool)
        if group.hop_us is not None:
            oldest = group.tile_of(now_us) - group.span + 1
            in_tiles = -(-event_us // group.hop_us) >= oldest
        group_keys = encode_keys(project, group.key_name, columns).to_pylist()
        hit |= in_tiles & np.fromiter((k in written for k in group_keys), dtype=bool, count=len(group_keys))
    return int(hit.sum())


def _pending(
    con: duckdb.DuckDBPyConnection, project: str, view: FeatureView, store_dir: Path, keys: pa.Table
) -> pa.Table | None:
    """The rows of the pushed entities in the view's pushed files not ingested yet (read while
    the store file is held, so no ingestion takes one meanwhile); None if there are none."""
    ingested = OfflineStore(con, project).known_files(view.name)
    last_file = max((f.file_id for f in ingested.values()), default=0)  # as ingestion numbers
    pending = [f.path for f in pushed_files(store_dir, view.name) if f.path not in ingested]
    # none: an ingestion took this push's file between its write and this read
    return _pending_rows(view, pending, last_file, keys) if pending else None


def _pending_rows(view: FeatureView, paths: list[str], last_file: int, keys: pa.Table) -> pa.Table:
    """The rows of pushed files not ingested yet, renamed as the view's table and numbered
    as ingestion will: file ids after every ingested one in push order, so a later push wins
    a full tie (same event and created time), as offline. Only the pushed entities' rows
    where the view has one join key (DuckDB picks them out otherwise)."""
    one_key = view.join_keys[0].name if len(view.join_keys) == 1 else None
    wanted = keys.column(one_key).unique() if one_key else None
    tables = []
    for i, path in enumerate(paths):
        rows = _file_rows(view, path)
        if wanted is not None:
            rows = rows.filter(pc.is_in(rows.column(one_key), value_set=wanted))
        seq = pc.add(pc.multiply(pa.scalar(last_file + 1 + i, pa.int64()), 1 << 32), rows.column(_ROW))
        tables.append(rows.drop_columns([_ROW]).append_column(SEQ, seq))
    _forget_files_but(paths)
    return pa.concat_tables(tables)


def _file_rows(view: FeatureView, path: str) -> pa.Table:
    """A pushed file's rows laid out as the view's table, with their row number in the file;
    kept while the file is pending (push files never change), up to ``_CACHED_ROWS`` rows."""
    global _cached_rows
    src = view.source
    names = [k.name for k in view.join_keys] + [f.name for f in view.columns]
    key = (path, src.timestamp_field, src.created_timestamp_field or "", *names)  # its layout
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    pushed = pq.read_table(path)
    n = pushed.num_rows
    arrays = {name: pushed.column(name) for name in names}
    arrays[EVENT_TS] = pushed.column(src.timestamp_field)
    created = src.created_timestamp_field
    arrays[CREATED_TS] = pushed.column(created) if created else pa.nulls(n, pa.timestamp("us", tz="UTC"))
    arrays[_ROW] = pa.array(np.arange(n, dtype=np.int64))
    rows = pa.table(arrays)
    with _cache_lock:
        if _cached_rows + n <= _CACHED_ROWS and key not in _cache:
            _cache[key] = rows
            _cached_rows += n
    return rows


def _forget_files_but(paths: list[str]) -> None:
    """Drop cached files no longer pending (ingested, or removed by hand) among this view's."""
    global _cached_rows
    if not paths:
        return
    folder = str(Path(paths[0]).parent)
    keep = set(paths)
    with _cache_lock:
        for key in [k for k in _cache if k[0] not in keep and str(Path(k[0]).parent) == folder]:
            _cached_rows -= _cache.pop(key).num_rows


def _lock(store_dir: Path, view: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((store_dir, view), threading.Lock())
