"""The source snapshot of each run (``run_sources``): the ``offline_files`` rows (path, size,
mtime, content fingerprint, rows, event-time range) of each view as the run left or read
them, so a run can be traced to the exact files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from featurestore.catalog import table_exists
from featurestore.storage import ProjectTables


@dataclass(frozen=True)
class RunSource:
    """One file of a run's snapshot."""

    kind: str  # ingest or materialize
    run_id: int
    view: str
    path: str
    fingerprint: str


@dataclass(frozen=True)
class RunSourceState(ProjectTables):
    """Owns ``run_sources``."""

    def ensure_table(self) -> None:
        schema = self.schema
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.run_sources (
                kind VARCHAR NOT NULL,            -- ingest or materialize
                run_id INTEGER NOT NULL,
                view VARCHAR NOT NULL,
                path VARCHAR NOT NULL,
                size BIGINT NOT NULL,
                mtime DOUBLE NOT NULL,
                fingerprint VARCHAR NOT NULL,
                rows BIGINT NOT NULL,
                min_event_ts TIMESTAMPTZ,
                max_event_ts TIMESTAMPTZ)"""
        )

    def record(self, kind: str, run_id: int, views: Sequence[str]) -> None:
        """Copy the views' current ``offline_files`` rows into ``run_sources`` for this run.

        The one read of the offline store's ``offline_files`` outside it: the copy is a
        snapshot of that table, taken in DuckDB without a round trip through Python.
        """
        if not views or not table_exists(self.con, self.project, "offline_files"):
            return
        self.ensure_table()
        schema = self.schema
        self.con.execute(
            f"""INSERT INTO {schema}.run_sources
                SELECT ?, ?, view, path, size, mtime, fingerprint, rows, min_event_ts, max_event_ts
                FROM {schema}.offline_files WHERE list_contains(?, view)""",
            [kind, run_id, list(views)],
        )

    def paths(self, kind: str, run_id: int) -> list[str]:
        """The distinct files of one run's snapshot, in path order."""
        if not table_exists(self.con, self.project, "run_sources"):
            return []
        rows = self.con.execute(
            f"SELECT DISTINCT path FROM {self.schema}.run_sources WHERE kind = ? AND run_id = ? "
            "ORDER BY path",
            [kind, run_id],
        ).fetchall()
        return [str(r[0]) for r in rows]

    def of_runs(self, names: Sequence[str]) -> list[tuple[RunSource, bool]]:
        """The snapshots of the runs named (``ingest-3``, ``materialize-12``), by kind, run and
        path, each file with whether the ingestion kept it (the one before it left the same
        fingerprint) rather than read it. The history is walked in DuckDB, not brought over."""
        if not names or not table_exists(self.con, self.project, "run_sources"):
            return []
        rows = self.con.execute(
            f"""SELECT kind, run_id, view, path, fingerprint, kept FROM (
                  SELECT kind, run_id, view, path, fingerprint,
                         kind = 'ingest' AND coalesce(fingerprint = lag(fingerprint) OVER (
                             PARTITION BY kind, view, path ORDER BY run_id), false) AS kept
                  FROM {self.schema}.run_sources)
                WHERE list_contains(?, kind || '-' || run_id)
                ORDER BY kind, run_id, path""",
            [list(names)],
        ).fetchall()
        return [
            (RunSource(str(k), int(r), str(v), str(p), str(f)), bool(kept)) for k, r, v, p, f, kept in rows
        ]
