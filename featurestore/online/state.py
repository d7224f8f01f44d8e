"""Online bookkeeping in DuckDB: materialization runs, per-view watermarks, pending removals,
and the store's online epoch (the value of its markers in Redis, see online/presence.py)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from featurestore.offline.tables import table_exists
from featurestore.storage import fetch_one, quote


def ensure_tables(con: duckdb.DuckDBPyConnection, project: str) -> None:
    schema = quote(project)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"CREATE SEQUENCE IF NOT EXISTS {schema}.materialization_run_ids START 1")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.materialization_runs (
            run_id INTEGER PRIMARY KEY,
            registry_version INTEGER NOT NULL,
            views VARCHAR[] NOT NULL,
            start_ts TIMESTAMPTZ,
            end_ts TIMESTAMPTZ NOT NULL,
            incremental BOOLEAN NOT NULL,
            status VARCHAR NOT NULL,          -- running, succeeded, failed, interrupted
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            rows_read BIGINT,
            entities_written BIGINT,
            entities_kept_newer BIGINT,
            error VARCHAR)"""
    )
    # Who runs it: materializations may run side by side, so a "running" run is only known
    # dead when its process, on this host, is gone (see mark_dead_runs)...
    con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS pid INTEGER")
    con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS host VARCHAR")
    # The ingestion runs a materialization did first, and the rows they rejected (quarantined
    # or without a key or event time): lineage from a run back to the ingestion that fed it.
    con.execute(
        f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS ingestion_runs INTEGER[]"
    )
    con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS rows_rejected BIGINT")
    # ...and which process had that pid: pids are reused, so a pid alone can outlive its run.
    con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS process VARCHAR")
    # Views asked for but left out, each failed alone (its source or validation): view -> why.
    # ``views`` holds the online views the run did write.
    con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS failed_views JSON")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.online_watermarks (
            view VARCHAR PRIMARY KEY,
            watermark TIMESTAMPTZ NOT NULL,   -- event times before it are in Redis
            run_started_at TIMESTAMPTZ NOT NULL,  -- files ingested later may hold late rows
            run_id INTEGER NOT NULL)"""
    )
    # One row: the id a materialization writes into Redis beside each view it completed, so a
    # Redis that lost its data (or holds another store's) is told apart from an up-to-date one.
    con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.online_epoch (epoch VARCHAR NOT NULL)")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.online_removals (
            view VARCHAR PRIMARY KEY,
            requested_at TIMESTAMPTZ NOT NULL)"""
    )


@dataclass(frozen=True)
class Watermark:
    watermark: datetime
    run_started_at: datetime
    run_id: int


def watermark(con: duckdb.DuckDBPyConnection, project: str, view: str) -> Watermark | None:
    row = fetch_one(
        con,
        f"SELECT watermark, run_started_at, run_id FROM {quote(project)}.online_watermarks WHERE view = ?",
        [view],
    )
    return Watermark(*row) if row else None


def epoch(con: duckdb.DuckDBPyConnection, project: str) -> str | None:
    """The store's online epoch, None if no materialization has recorded one yet."""
    if not table_exists(con, project, "online_epoch"):
        return None
    row = fetch_one(con, f"SELECT epoch FROM {quote(project)}.online_epoch LIMIT 1")
    return str(row[0]) if row else None


def ensure_epoch(con: duckdb.DuckDBPyConnection, project: str) -> str:
    """The store's online epoch, created on first use (the caller has run ensure_tables)."""
    current = epoch(con, project)
    if current is None:
        current = uuid.uuid4().hex
        con.execute(f"INSERT INTO {quote(project)}.online_epoch VALUES (?)", [current])
    return current


def start_run(
    con: duckdb.DuckDBPyConnection,
    project: str,
    registry_version: int,
    views: list[str],
    start: datetime | None,
    end: datetime,
    incremental: bool,
) -> tuple[int, datetime]:
    mark_dead_runs(con, project)
    started_at = datetime.now(UTC)
    row = fetch_one(con, "SELECT nextval(?)", [f"{quote(project)}.materialization_run_ids"])
    assert row is not None
    run_id = int(row[0])
    con.execute(
        f"INSERT INTO {quote(project)}.materialization_runs "
        "(run_id, registry_version, views, start_ts, end_ts, incremental, status, started_at, pid, host, "
        "process) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
        [
            run_id,
            registry_version,
            views,
            start,
            end,
            incremental,
            started_at,
            os.getpid(),
            socket.gethostname(),
            process_identity(os.getpid()),
        ],
    )
    return run_id, started_at


def mark_dead_runs(con: duckdb.DuckDBPyConnection, project: str) -> list[int]:
    """Record as interrupted the runs still "running" whose process on this host is gone."""
    rows = con.execute(
        f"SELECT run_id, pid, process FROM {quote(project)}.materialization_runs "
        "WHERE status = 'running' AND host = ? AND pid IS NOT NULL",
        [socket.gethostname()],
    ).fetchall()
    dead = [run_id for run_id, pid, process in rows if not _alive(pid, process)]
    for run_id in dead:
        con.execute(
            f"UPDATE {quote(project)}.materialization_runs SET status = 'interrupted', "
            "error = 'the process ended before the run finished' WHERE run_id = ?",
            [run_id],
        )
    return dead


def _alive(pid: int, process: str | None = None) -> bool:
    """Whether the process that started a run still runs: its pid exists and, where the run
    recorded it, the process with that pid is the same one (same boot, same start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if process is None:  # recorded before the identity was, or not known on this system
        return True
    now = process_identity(pid)
    return now is None or now == process


def process_identity(pid: int) -> str | None:
    """``boot id:start time`` of process ``pid`` (Linux /proc), None where that is not known.

    A pid is reused once its process ended; its start time (clock ticks since boot) and the
    boot it belongs to are not, so together they name one process.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return f"{boot}:{fields[19]}"  # field 22 of stat, starttime; fields[0] is field 3


def link_ingestion(
    con: duckdb.DuckDBPyConnection, project: str, run_id: int, ingestion_runs: list[int], rows_rejected: int
) -> None:
    con.execute(
        f"UPDATE {quote(project)}.materialization_runs "
        "SET ingestion_runs = ?, rows_rejected = ? WHERE run_id = ?",
        [ingestion_runs, rows_rejected, run_id],
    )


def record_failed_views(
    con: duckdb.DuckDBPyConnection, project: str, run_id: int, failed: dict[str, str]
) -> None:
    if failed:
        con.execute(
            f"UPDATE {quote(project)}.materialization_runs SET failed_views = ? WHERE run_id = ?",
            [json.dumps(failed), run_id],
        )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    project: str,
    run_id: int,
    status: str,
    rows_read: int,
    written: int,
    kept_newer: int,
    error: str | None = None,
) -> None:
    con.execute(
        f"UPDATE {quote(project)}.materialization_runs SET status = ?, finished_at = ?, rows_read = ?, "
        "entities_written = ?, entities_kept_newer = ?, error = ? WHERE run_id = ?",
        [status, datetime.now(UTC), rows_read, written, kept_newer, error, run_id],
    )


def advance_watermark(
    con: duckdb.DuckDBPyConnection, project: str, view: str, end: datetime, started_at: datetime, run_id: int
) -> None:
    """Move the watermark forward only: an older range materialized later never moves it back."""
    con.execute(
        f"""INSERT INTO {quote(project)}.online_watermarks VALUES (?, ?, ?, ?)
            ON CONFLICT (view) DO UPDATE SET
              watermark = greatest(watermark, excluded.watermark),
              run_started_at = CASE WHEN excluded.watermark >= watermark
                                    THEN excluded.run_started_at ELSE run_started_at END,
              run_id = CASE WHEN excluded.watermark >= watermark THEN excluded.run_id ELSE run_id END""",
        [view, end, started_at, run_id],
    )


def request_removal(con: duckdb.DuckDBPyConnection, project: str, views: list[str]) -> None:
    for view in views:
        con.execute(
            f"INSERT OR REPLACE INTO {quote(project)}.online_removals VALUES (?, ?)",
            [view, datetime.now(UTC)],
        )
        con.execute(f"DELETE FROM {quote(project)}.online_watermarks WHERE view = ?", [view])


def pending_removals(con: duckdb.DuckDBPyConnection, project: str) -> list[str]:
    return [r[0] for r in con.execute(f"SELECT view FROM {quote(project)}.online_removals").fetchall()]


def removal_done(con: duckdb.DuckDBPyConnection, project: str, view: str) -> None:
    con.execute(f"DELETE FROM {quote(project)}.online_removals WHERE view = ?", [view])
