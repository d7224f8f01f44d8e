"""Materialization runs (``materialization_runs``): each copy of views' newest rows to Redis.

The online materializer's own state (watermarks, pending removals, the online epoch) stays
with it in ``online/state.py``: it describes what Redis holds, not what a run did.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from featurestore.catalog import column_types, table_exists
from featurestore.storage import ProjectTables, fetch_one


@dataclass(frozen=True)
class MaterializationRun:
    """One row of ``materialization_runs``, as lineage and metrics show it."""

    run_id: int
    views: list[str]
    registry_version: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_read: int | None
    entities_written: int | None
    error: str | None
    ingestion_runs: list[int] | None  # the ingestions it ran first, which fed it
    rows_rejected: int | None
    changed: bool  # failed, or wrote something (see CHANGED)


@dataclass(frozen=True)
class RunTotals:
    """The runs of one status, summed."""

    runs: int
    rows_read: int
    entities_written: int
    seconds: float


# A run changed something when it failed or wrote entities (see ingestion.CHANGED).
CHANGED = "(status <> 'succeeded' OR coalesce(entities_written, 0) > 0)"


@dataclass(frozen=True)
class MaterializationRunState(ProjectTables):
    """Owns ``materialization_runs`` and its id sequence."""

    @property
    def _table(self) -> str:
        return f"{self.schema}.materialization_runs"

    def exists(self) -> bool:
        return table_exists(self.con, self.project, "materialization_runs")

    def ensure_table(self) -> None:
        schema = self.schema
        con = self.con
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
        con.execute(
            f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS rows_rejected BIGINT"
        )
        # ...and which process had that pid: pids are reused, so a pid alone can outlive its run.
        con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS process VARCHAR")
        # Views asked for but left out, each failed alone (its source or validation): view -> why.
        # ``views`` holds the online views the run did write.
        con.execute(f"ALTER TABLE {schema}.materialization_runs ADD COLUMN IF NOT EXISTS failed_views JSON")

    # -- writers ---------------------------------------------------------------------------

    def start(
        self,
        registry_version: int,
        views: list[str],
        start: datetime | None,
        end: datetime,
        incremental: bool,
    ) -> tuple[int, datetime]:
        """A new "running" run, after recording the dead ones; its id and start time."""
        self.mark_dead_runs()
        started_at = datetime.now(UTC)
        row = fetch_one(self.con, "SELECT nextval(?)", [f"{self.schema}.materialization_run_ids"])
        assert row is not None
        run_id = int(row[0])
        self.con.execute(
            f"INSERT INTO {self._table} "
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

    def mark_dead_runs(self) -> list[int]:
        """Record as interrupted the runs still "running" whose process on this host is gone."""
        rows = self.con.execute(
            f"SELECT run_id, pid, process FROM {self._table} "
            "WHERE status = 'running' AND host = ? AND pid IS NOT NULL",
            [socket.gethostname()],
        ).fetchall()
        dead = [run_id for run_id, pid, process in rows if not _alive(pid, process)]
        for run_id in dead:
            self.con.execute(
                f"UPDATE {self._table} SET status = 'interrupted', "
                "error = 'the process ended before the run finished' WHERE run_id = ?",
                [run_id],
            )
        return dead

    def link_ingestion(self, run_id: int, ingestion_runs: list[int], rows_rejected: int) -> None:
        self.con.execute(
            f"UPDATE {self._table} SET ingestion_runs = ?, rows_rejected = ? WHERE run_id = ?",
            [ingestion_runs, rows_rejected, run_id],
        )

    def record_failed_views(self, run_id: int, failed: dict[str, str]) -> None:
        if failed:
            self.con.execute(
                f"UPDATE {self._table} SET failed_views = ? WHERE run_id = ?", [json.dumps(failed), run_id]
            )

    def finish(
        self,
        run_id: int,
        status: str,
        rows_read: int,
        written: int,
        kept_newer: int,
        error: str | None = None,
    ) -> None:
        self.con.execute(
            f"UPDATE {self._table} SET status = ?, finished_at = ?, rows_read = ?, "
            "entities_written = ?, entities_kept_newer = ?, error = ? WHERE run_id = ?",
            [status, datetime.now(UTC), rows_read, written, kept_newer, error, run_id],
        )

    # -- readers ---------------------------------------------------------------------------

    def any(self) -> bool:
        """Whether any run is recorded."""
        if not self.exists():
            return False
        row = fetch_one(self.con, f"SELECT count(*) FROM {self._table}")
        return bool(row and row[0])

    def outcome(self, run_id: int) -> tuple[datetime, datetime | None, str, str | None] | None:
        """(started_at, finished_at, status, error) of a run, None if there is no such run."""
        row = fetch_one(
            self.con,
            f"SELECT started_at, finished_at, status, error FROM {self._table} WHERE run_id = ?",
            [run_id],
        )
        return None if row is None else (row[0], row[1], str(row[2]), row[3])

    def finished_at(self, run_id: int) -> datetime | None:
        if not self.exists():
            return None
        row = fetch_one(self.con, f"SELECT finished_at FROM {self._table} WHERE run_id = ?", [run_id])
        return row[0] if row else None

    def latest(self, limit: int) -> list[MaterializationRun]:
        """The ``limit`` latest runs, newest first."""
        return self._select("true", [], "run_id DESC", limit)

    def page(self, limit: int, offset: int = 0) -> tuple[list[MaterializationRun], int]:
        """Runs newest first, ``limit`` from ``offset``, and how many in all."""
        if not self.exists():
            return [], 0
        row = fetch_one(self.con, f"SELECT count(*) FROM {self._table}")
        return self._select("true", [], "run_id DESC", limit, offset), int(row[0]) if row else 0

    def get(self, run_id: int) -> MaterializationRun | None:
        """One run, None if there is no such run."""
        found = self._select("run_id = ?", [run_id], "run_id", 1)
        return found[0] if found else None

    def failed_views(self, run_id: int) -> dict[str, str]:
        """The views a run left out because they failed alone: view -> why."""
        return self.failed_views_of([run_id]).get(run_id, {})

    def failed_views_of(self, run_ids: list[int]) -> dict[int, dict[str, str]]:
        """Run -> the views it left out because they failed alone (runs that left none out: absent)."""
        if not run_ids or not self.exists():
            return {}
        if "failed_views" not in column_types(self.con, self.project, "materialization_runs"):
            return {}  # a file whose runs predate the column
        rows = self.con.execute(
            f"SELECT run_id, failed_views FROM {self._table} "
            "WHERE list_contains(?, run_id) AND failed_views IS NOT NULL",
            [run_ids],
        ).fetchall()
        return {int(run_id): json.loads(failed) for run_id, failed in rows if failed}

    def totals(self) -> dict[str, RunTotals]:
        """Per status: runs, rows read, entities written and seconds spent."""
        if not self.exists():
            return {}
        rows = self.con.execute(
            "SELECT status, count(*), coalesce(sum(rows_read), 0), coalesce(sum(entities_written), 0), "
            f"coalesce(sum(epoch(finished_at) - epoch(started_at)), 0) FROM {self._table} GROUP BY status"
        ).fetchall()
        return {str(s): RunTotals(int(c), int(r), int(w), float(sec)) for s, c, r, w, sec in rows}

    def recent(self, limit: int, name: str) -> list[MaterializationRun]:
        """The ``limit`` latest runs that changed something, and the run ``name``, oldest first."""
        if not self.exists():
            return []
        where = "(changed AND k <= ?) OR ? = 'materialize-' || run_id"
        return self._select(where, [limit, name], "run_id", None)

    def _select(
        self, where: str, params: list[object], order: str, limit: int | None, offset: int = 0
    ) -> list[MaterializationRun]:
        if not self.exists():
            return []
        # Added in place on older files: absent until a run since has written one.
        linked = "ingestion_runs" in column_types(self.con, self.project, "materialization_runs")
        fed_by = "ingestion_runs, rows_rejected" if linked else "NULL, NULL"
        rows = self.con.execute(
            f"""SELECT run_id, views, registry_version, status, started_at, finished_at, rows_read,
                       entities_written, error, {fed_by}, changed FROM (
                  SELECT *, row_number() OVER (PARTITION BY changed ORDER BY run_id DESC) AS k
                  FROM (SELECT *, {CHANGED} AS changed FROM {self._table}))
                WHERE {where} ORDER BY {order}{"" if limit is None else f" LIMIT {int(limit)}"}
                {f" OFFSET {int(offset)}" if offset else ""}""",
            params,
        ).fetchall()
        return [MaterializationRun(*row) for row in rows]

    def unchanged_per_view(self) -> dict[str, int]:
        """View -> how many runs over it changed nothing."""
        if not self.exists():
            return {}
        rows = self.con.execute(
            f"SELECT view, count(*) FROM (SELECT unnest(views) AS view FROM {self._table} "
            f"WHERE NOT {CHANGED}) GROUP BY view"
        ).fetchall()
        return {str(v): int(n) for v, n in rows}


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
