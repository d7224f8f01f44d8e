"""Materialization: the newest row per entity of each online view, from DuckDB into Redis.

Three phases so the DuckDB file is locked for writing only briefly: (1) ingest sources and
record the run, (2) read the newest rows per entity with a read-only connection and write
them to Redis in pipelined batches, (3) record the outcome and advance the watermarks.
Every write is newer-wins, so a run killed at any point and run again -- or two runs over
overlapping ranges -- leave Redis exactly as one uninterrupted run would. The exception is a
key whose rows a changed source took away: it is rewritten outright from what remains.
``store.materialize`` runs phase (1) on its own write connection (``start_run``), then
``write_run`` does (2) and (3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from featurestore.config import Config
from featurestore.definitions import FeatureView
from featurestore.errors import InvalidRequestError, NotAppliedError, OnlineStoreUnavailable
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ, retracted_table, view_table
from featurestore.offline.offline_store import OfflineStore
from featurestore.online import presence
from featurestore.online.codec import ViewCodec, encode_created, timestamps_us
from featurestore.online.keys import encode_keys
from featurestore.online.state import OnlineState
from featurestore.online.store import OnlineStore
from featurestore.online.tile_writer import write_tiles
from featurestore.runs.materialization import MaterializationRunState
from featurestore.secrets import mask_url
from featurestore.storage import connection, fetch_one, quote

if TYPE_CHECKING:
    from featurestore.online.spark_materialize import SparkMaterializer

Progress = Callable[[str, int, int], None]
BATCH_ROWS = 20_000
# DuckDB's memory_limit for reading the newest rows of plain views when [offline] memory_limit
# is unset. DuckDB's own default is 80% of RAM, so its buffer pool and the newest-row window
# (QUALIFY row_number() per key) grew with the data (1.8 GiB at 100M rows); beyond this cap
# DuckDB spills to .featurestore/tmp. Not for aggregation views: their tiles' ordered list
# aggregates do not spill enough and fail under a small cap (512MB at 10M rows). Time and RSS:
# benchmarks/RESULTS.md, target 6.
DEFAULT_MEMORY_LIMIT = "1GB"
# Values stay in Redis this long after their TTL, so a lookup can say EXPIRED rather than
# NOT_FOUND for a while; then key expiry reclaims the memory.
EXPIRED_GRACE = timedelta(hours=1)


@dataclass
class ViewResult:
    view: str
    start: datetime | None
    end: datetime
    rows_read: int = 0
    entities: int = 0
    written: int = 0
    kept_newer: int = 0
    # Entities whose newer source rows were taken away (a changed or removed file): rewritten
    # from the rows that remain, or deleted when none is left.
    corrected: int = 0
    seconds: float = 0.0
    # Rows in range older than the view's TTL (and EXPIRED_GRACE): not written, since a value
    # that old is not served; counted so a run over historical data can say why it wrote nothing.
    expired: int = 0
    ttl: timedelta | None = None
    rewritten: str | None = None  # why an incremental run rewrote the view in full (online data lost)


@dataclass
class MaterializeResult:
    run_id: int
    views: list[ViewResult] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ingestion: list[Any] = field(default_factory=list)  # IngestResult of each view, ingested first

    @property
    def rows_read(self) -> int:
        return sum(v.rows_read for v in self.views)

    @property
    def written(self) -> int:
        return sum(v.written for v in self.views)

    @property
    def expired(self) -> int:
        return sum(v.expired for v in self.views)

    @property
    def rows_rejected(self) -> int:
        """Rows the ingestion of its views set aside: quarantined, or without a key or event time."""
        written = {v.view for v in self.views}
        return sum(r.rows_rejected for r in self.ingestion if r.view in written)


@dataclass(frozen=True)
class _Plan:
    view: FeatureView
    start: datetime | None
    end: datetime
    late_since: datetime | None  # incremental: also rows of files ingested after this
    # Whether every row before ``end`` is in Redis after this plan: not so for an explicit
    # ``start``, whose earlier rows the next incremental run must still find.
    advances: bool = True
    retracted: bool = False  # keys lost rows since the last run: rewrite them first
    rewrite: str | None = None  # incremental, but Redis lost the view's values: why it is rewritten


@dataclass(frozen=True)
class StartedRun:
    """A run recorded in DuckDB (status running) whose Redis writes have not begun."""

    run_id: int
    started_at: datetime
    now: datetime
    plans: list[_Plan]
    removals: list[str]
    epoch: str  # the store's online epoch: the value of the markers this run sets (presence.py)


def memory_limit(config: Config, view: FeatureView) -> str | None:
    """DuckDB's memory_limit while materializing ``view``: the configured one, else
    DEFAULT_MEMORY_LIMIT (an aggregation view's tiles fit it: tile_writer runs each group's query
    in as many buckets of entities as the limit needs).

    Training sets keep DuckDB's default: users size those (the whole join is theirs).
    """
    return config.memory_limit or DEFAULT_MEMORY_LIMIT


def set_memory_limit(con: duckdb.DuckDBPyConnection, limit: str | None) -> None:
    """``limit`` (a size such as 1GB) for the connection's database; None: DuckDB's default."""
    if limit:
        con.execute("SET memory_limit = ?", [limit])
    else:
        con.execute("RESET memory_limit")


def start_run(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    views: Sequence[FeatureView],
    registry_version: int,
    start: datetime | None,
    end: datetime | None,
    incremental: bool,
    now: datetime | None = None,
    store: OnlineStore | None = None,
) -> StartedRun:
    """Plan each online view's range and record the run, on the caller's write connection.

    The caller may do more on the same connection (ingestion before, lineage after): opening
    and closing the file costs more than the bookkeeping itself. With ``store``, an
    incremental run first checks that Redis still holds each view (presence.py) and rewrites
    in full those it lost.
    """
    now = now or datetime.now(UTC)
    end = end or now
    if start is not None and start >= end:
        raise InvalidRequestError(
            f"materialize: start {start.isoformat()} is not before end {end.isoformat()}"
        )
    online = [v for v in views if v.online]
    online_state = OnlineState(con, config.project)
    online_state.ensure_tables()
    for v in online:
        if not OfflineStore(con, config.project).has_view_table(v.name):
            raise NotAppliedError(
                f"feature view {v.name!r} has not been ingested: run 'featurestore materialize'"
            )
    epoch = online_state.ensure_epoch()
    plans = [_plan(con, config.project, v, start, end, incremental) for v in online]
    if store is not None:
        plans = _rewrite_lost(con, store, plans, epoch, now)
    offline = OfflineStore(con, config.project)
    plans = [replace(p, retracted=offline.has_retractions(p.view.name)) for p in plans]
    removals = online_state.pending_removals()
    run_id, started_at = MaterializationRunState(con, config.project).start(
        registry_version, [v.name for v in online], start, end, incremental
    )
    return StartedRun(run_id, started_at, now, plans, removals, epoch)


def _rewrite_lost(
    con: duckdb.DuckDBPyConnection,
    store: OnlineStore,
    plans: list[_Plan],
    epoch: str,
    now: datetime,
) -> list[_Plan]:
    """Incremental plans of views that Redis no longer (fully) holds become full rewrites."""
    project = store.project
    incremental = [p for p in plans if p.late_since is not None]
    lost = store.unmarked([p.view.name for p in incremental], epoch)
    for p in incremental:
        mark = OnlineState(con, project).watermark(p.view.name)
        if p.view.name in lost or mark is None:
            continue
        checked, gone = presence.partly_lost(con, store, p.view, mark, now, presence.RUN_SAMPLE)
        if gone:
            lost[p.view.name] = presence.partial_loss_reason(checked, gone)
    return [
        replace(p, start=None, late_since=None, rewrite=lost[p.view.name]) if p.view.name in lost else p
        for p in plans
    ]


def write_run(
    config: Config,
    run: StartedRun,
    progress: Progress | None = None,
    after: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None,
) -> MaterializeResult:
    """Write a started run's rows to Redis, then record its outcome and advance the watermarks.

    The file is held read-only while Redis is written (other processes may read it meanwhile)
    and for writing only at the end; ``after(con, run_id)`` runs on that last connection,
    failed or not.
    """
    began = time.perf_counter()
    codecs = {plan.view.name: ViewCodec(plan.view) for plan in run.plans if not plan.view.aggregations}
    result = MaterializeResult(run.run_id)
    status, error = "interrupted", None
    store: OnlineStore | None = None
    spark = None
    if config.offline_engine == "spark":  # imported here: it imports this module
        from featurestore.online.spark_materialize import SparkMaterializer

        spark = SparkMaterializer(config)
    try:
        if spark is not None:  # before any view is written
            from featurestore.offline.spark.aggregations import refuse_sketches

            for plan in run.plans:
                refuse_sketches(plan.view.name, plan.view.aggregations)
        store = OnlineStore.connect(config.redis_url, config.project)
        store.begin_writes(run.run_id)
        for name in run.removals:
            result.removed[name] = store.delete_view(name)
        with connection(config.duckdb_path, read_only=True, memory_limit=config.memory_limit) as con:
            for plan in run.plans:
                set_memory_limit(con, memory_limit(config, plan.view))
                if plan.view.aggregations:
                    result.views.append(
                        _materialize_tiles(con, config.project, plan, store, run, progress, spark)
                    )
                    continue
                codec = codecs[plan.view.name]
                result.views.append(
                    _materialize_view(
                        con, config.project, plan, codec, store, run.run_id, run.now, progress, spark
                    )
                )
        completed = [p.view.name for p in run.plans if p.advances]
        lost = not store.mark_written(run.run_id, run.epoch, completed)
        if lost:
            raise OnlineStoreUnavailable(
                f"the online store {mask_url(config.redis_url)} lost its data during materialization run "
                f"{run.run_id} (flushed or restarted): run 'featurestore materialize --incremental' again"
            )
        status = "succeeded"
    except OnlineStoreUnavailable as e:
        status, error = "failed", e.message
        raise
    except Exception as e:
        status, error = "failed", f"{type(e).__name__}: {e}"
        raise
    finally:
        if store is not None:
            if status != "succeeded":
                store.end_writes(run.run_id)  # a killed run leaves its field; it is never read
            store.close()
        with connection(config.duckdb_path) as con:
            _finish(con, config.project, run, result, status, error)
            if after is not None:
                after(con, run.run_id)
    result.seconds = time.perf_counter() - began
    return result


def _finish(
    con: duckdb.DuckDBPyConnection,
    project: str,
    run: StartedRun,
    result: MaterializeResult,
    status: str,
    error: str | None,
) -> None:
    kept_newer = sum(v.kept_newer for v in result.views)
    MaterializationRunState(con, project).finish(
        run.run_id, status, result.rows_read, result.written, kept_newer, error
    )
    if status == "succeeded":
        online, offline = OnlineState(con, project), OfflineStore(con, project)
        for name in result.removed:
            online.removal_done(name)
        for plan in run.plans:
            if plan.retracted:
                offline.forget_retractions(plan.view.name, run.started_at)
            if plan.advances:
                online.advance_watermark(plan.view.name, plan.end, run.started_at, run.run_id)


def _plan(
    con: duckdb.DuckDBPyConnection,
    project: str,
    view: FeatureView,
    start: datetime | None,
    end: datetime,
    incremental: bool,
) -> _Plan:
    if not incremental:
        return _Plan(view, start, end, None, advances=start is None)
    mark = OnlineState(con, project).watermark(view.name)
    if mark is None:
        return _Plan(view, None, end, None)
    return _Plan(view, min(mark.watermark, end), end, mark.run_started_at)


def newest_rows_sql(
    project: str, plan: _Plan, now: datetime, only: str | None = None
) -> tuple[str, list[object]]:
    """The newest row per entity in the plan's range (the same order as training sets).

    ``only``: a further SQL condition on the rows (e.g. which keys).
    """
    keys = ", ".join(quote(k.name) for k in plan.view.join_keys)
    in_range, params = rows_in_range_sql(project, plan, now, only)
    newest = (
        f"{in_range} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {EVENT_TS} DESC, "
        f"{CREATED_TS} DESC NULLS LAST, {SEQ} DESC) = 1"
    )
    return newest, params


def rows_in_range_sql(
    project: str, plan: _Plan, now: datetime, only: str | None = None, expired: bool = False
) -> tuple[str, list[object]]:
    """Every row in the plan's range, the versions newest_rows_sql picks from. ``expired``:
    the rows in range too old to serve instead (a view with a TTL), which a run skips."""
    view = plan.view
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    cols = ", ".join(quote(f.name) for f in view.features)
    where = [f"{EVENT_TS} < ?"] + [f"{quote(k.name)} IS NOT NULL" for k in view.join_keys]
    if only is not None:
        where.append(only)
    params: list[object] = [plan.end]
    if view.ttl is not None:  # rows already past their TTL would only be served as expired
        where.append(f"{EVENT_TS} < ?" if expired else f"{EVENT_TS} >= ?")
        params.append(now - view.ttl - EXPIRED_GRACE)
    if plan.start is not None:
        if plan.late_since is not None:
            late = (
                f"SELECT {keys} FROM {view_table(project, view.name)} WHERE {FILE_ID} IN "
                f"(SELECT file_id FROM {quote(project)}.offline_files WHERE view = ? AND ingested_at >= ?)"
            )
            where.append(f"({EVENT_TS} >= ? OR ({keys}) IN ({late}))")
            params += [plan.start, view.name, plan.late_since]
        else:
            where.append(f"{EVENT_TS} >= ?")
            params.append(plan.start)
    sql = (
        f"SELECT {keys}, {EVENT_TS}, {CREATED_TS}, {cols} FROM {view_table(project, view.name)} "
        f"WHERE {' AND '.join(where)}"
    )
    return sql, params


def _materialize_view(
    con: duckdb.DuckDBPyConnection,
    project: str,
    plan: _Plan,
    codec: ViewCodec,
    writer: OnlineStore,
    run_id: int,
    now: datetime,
    progress: Progress | None,
    spark: SparkMaterializer | None = None,
) -> ViewResult:
    began = time.perf_counter()
    view = plan.view
    result = ViewResult(view.name, plan.start, plan.end, ttl=view.ttl, rewritten=plan.rewrite)
    if plan.retracted:
        result.corrected = _correct_retracted(con, project, plan, codec, writer, run_id, now)
    if spark is None:
        _write_newest(con, project, plan, codec, writer, run_id, now, progress, result)
    else:  # the same rows, read and written by the Spark executors; only their counts come back
        if progress:
            progress(view.name, 0, 0)
        counts = spark.write_view(con, view, plan.start, plan.end, plan.late_since, run_id, now)
        result.rows_read, result.entities, result.expired = counts.rows_read, counts.entities, counts.expired
        result.written, result.kept_newer = counts.written, counts.kept_newer
        if progress:
            progress(view.name, result.entities, result.entities)
    result.seconds = time.perf_counter() - began
    return result


def _materialize_tiles(
    con: duckdb.DuckDBPyConnection,
    project: str,
    plan: _Plan,
    writer: OnlineStore,
    run: StartedRun,
    progress: Progress | None,
    spark: SparkMaterializer | None = None,
) -> ViewResult:
    """An aggregation view: its entities' tiles, recomputed from their events (tile_writer.py;
    on the Spark engine the same tiles, computed and written by the executors)."""
    began = time.perf_counter()
    result = ViewResult(plan.view.name, plan.start, plan.end, rewritten=plan.rewrite)
    since = None if plan.start is None else (plan.start, plan.late_since)
    if spark is None:
        counts = write_tiles(
            con, project, plan.view, plan.end, since, plan.retracted, writer, run.run_id, run.now, progress
        )
    else:
        counts = spark.write_tiles(
            con, plan.view, plan.end, since, plan.retracted, run.run_id, run.now, progress
        )
    result.rows_read, result.entities, result.written = counts.rows_read, counts.entities, counts.entities
    result.corrected = counts.corrected
    result.seconds = time.perf_counter() - began
    return result


def _write_newest(
    con: duckdb.DuckDBPyConnection,
    project: str,
    plan: _Plan,
    codec: ViewCodec,
    writer: OnlineStore,
    run_id: int,
    now: datetime,
    progress: Progress | None,
    result: ViewResult,
) -> None:
    """The DuckDB engine's data step: read the newest rows in Arrow batches, write each."""
    view = plan.view
    sql, params = newest_rows_sql(project, plan, now)
    result.rows_read, total = _count(con, *rows_in_range_sql(project, plan, now), view)
    if view.ttl is not None:
        result.expired = _count_rows(con, *rows_in_range_sql(project, plan, now, expired=True))
    if progress:
        progress(f"{view.name}", 0, total)
    # Closed even when a batch fails: a reader left open (the traceback keeps it alive)
    # makes the next duckdb.connect to the file hang, so the run could never be recorded.
    with con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS) as reader:
        for batch in reader:
            key_list, value_list, expire_at = encode_rows(project, view, codec, batch, run_id, now)
            written = writer.write(key_list, value_list, expire_at)
            result.entities += batch.num_rows
            result.written += written
            result.kept_newer += len(key_list) - written
            if progress:
                progress(f"{view.name}", result.entities, total)


def encode_rows(
    project: str, view: FeatureView, codec: ViewCodec, batch: pa.RecordBatch, run_id: int, now: datetime
) -> tuple[list[str], list[bytes], list[int]]:
    """Keys, values and absolute expiries (ms, 0 for none) of a batch's rows still within TTL."""
    n = batch.num_rows
    keys = encode_keys(project, view.name, [(k.name, batch.column(k.name)) for k in view.join_keys])
    event_us = timestamps_us(batch.column(EVENT_TS))
    values = codec.encode(batch, event_us, encode_created(batch.column(CREATED_TS), n), run_id)
    if view.ttl is None:
        return keys.to_pylist(), values.to_pylist(), [0] * n
    ttl_ms = int((view.ttl + EXPIRED_GRACE) / timedelta(milliseconds=1))
    expire_at = event_us // 1000 + ttl_ms
    live = expire_at > int(now.timestamp() * 1000)
    if not live.all():
        mask = pa.array(live)
        keys, values, expire_at = keys.filter(mask), values.filter(mask), expire_at[live]
    return keys.to_pylist(), values.to_pylist(), expire_at.tolist()


def _correct_retracted(
    con: duckdb.DuckDBPyConnection,
    project: str,
    plan: _Plan,
    codec: ViewCodec,
    writer: OnlineStore,
    run_id: int,
    now: datetime,
) -> int:
    """Rewrite the retracted keys from their newest remaining row, or delete them; how many.

    Newer-wins would keep the value of a row that no longer exists, so these keys are
    replaced outright with what a full materialization up to now would write.
    """
    view = plan.view
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    retracted = f"(SELECT DISTINCT {keys} FROM {retracted_table(project, view.name)})"
    full = replace(plan, start=None, end=max(plan.end, now), late_since=None)
    newest, params = newest_rows_sql(project, full, now, only=f"({keys}) IN {retracted}")
    kept: set[str] = set()
    with con.sql(newest, params=params).to_arrow_reader(BATCH_ROWS) as reader:
        for batch in reader:
            key_list, value_list, expire_at = encode_rows(project, view, codec, batch, run_id, now)
            writer.replace(key_list, value_list, expire_at)
            kept.update(key_list)
    every = con.sql(f"SELECT {keys} FROM {retracted}").to_arrow_table()
    all_keys = encode_keys(project, view.name, [(k.name, every.column(k.name)) for k in view.join_keys])
    gone = sorted(set(all_keys.to_pylist()) - kept)
    for i in range(0, len(gone), BATCH_ROWS):
        writer.delete(gone[i : i + BATCH_ROWS])
    return len(kept) + len(gone)


def _count_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    """Rows of ``sql`` (rows_in_range_sql), no entities: a plain count, whose memory does not
    grow with the data.

    The expired rows are most of a view's history (all but its TTL): grouping them by key to
    count entities nobody reads held a hash table of every key in the process's peak RSS.
    """
    row = fetch_one(con, f"SELECT count(*) FROM ({sql})", params)
    return int(row[0]) if row else 0


def _count(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object], view: FeatureView
) -> tuple[int, int]:
    """(rows in range, entities among them) of ``sql`` (rows_in_range_sql): a hash aggregate,
    cheaper than the window."""
    keys = ", ".join(quote(k.name) for k in view.join_keys)
    row = fetch_one(
        con,
        f"SELECT coalesce(sum(n), 0), count(*) FROM (SELECT count(*) n FROM ({sql}) GROUP BY {keys})",
        params,
    )
    return (int(row[0]), int(row[1])) if row else (0, 0)
