"""Runs: each ingestion of a view and each materialization, with the source snapshots it read.

Ingestion runs live in ``ingestion_runs``; materialization runs keep their own table
(``materialization_runs``, see ``online/state.py``). Both record in ``run_sources`` the
``offline_files`` rows (path, size, mtime, content fingerprint, rows, event-time range) of
each view as the run left or read them, so a run can be traced to the exact files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from featurestore.errors import FeatureStoreError, ValidationError
from featurestore.monitoring import run_stats
from featurestore.offline.ingest import IngestResult
from featurestore.offline.tables import table_exists
from featurestore.storage import fetch_one, quote
from featurestore.validation import ViewReport

if TYPE_CHECKING:  # the OpenLineage client loads only when events are emitted
    from featurestore.lineage.openlineage import LineageEvents

INGEST = "ingest"
MATERIALIZE = "materialize"


def run_name(kind: str, run_id: int) -> str:
    """How a run is named to users: ``ingest-3``, ``materialize-12``."""
    return f"{kind}-{run_id}"


def ensure_tables(con: duckdb.DuckDBPyConnection, project: str) -> None:
    schema = quote(project)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"CREATE SEQUENCE IF NOT EXISTS {schema}.ingestion_run_ids START 1")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.ingestion_runs (
            run_id INTEGER PRIMARY KEY,
            view VARCHAR NOT NULL,
            registry_version INTEGER NOT NULL,
            status VARCHAR NOT NULL,          -- running, succeeded, failed, interrupted
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            files_added INTEGER,
            files_changed INTEGER,
            files_removed INTEGER,
            rows_inserted BIGINT,
            rows_deleted BIGINT,
            rows_skipped BIGINT,
            rows_quarantined BIGINT,
            validation JSON,                  -- summary of the files validated by this run
            error VARCHAR)"""
    )
    con.execute(
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


def validation_summary(report: ViewReport | None) -> dict[str, Any] | None:
    """The counts of a view's validation, per file and failing check (no example rows)."""
    if report is None:
        return None
    return {
        "policy": report.policy,
        "passed": report.passed,
        "rows": report.rows,
        "invalid_rows": report.invalid_rows,
        "failures": [
            {"path": path, "column": c.column, "check": c.check, "failing_rows": c.failing_rows}
            for path, c in report.failures()
        ],
    }


@dataclass
class IngestionRuns:
    """The runs of one ``FeatureStore.ingest`` call, one per view; see ``ingestion_runs``."""

    con: duckdb.DuckDBPyConnection
    project: str
    started_at: datetime
    events: LineageEvents | None = None
    ids: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def succeeded(self, *results: IngestResult) -> None:
        """Record each view's counts and validation, and the source snapshot it left."""
        now = datetime.now(UTC)
        for r in results:
            run_id = self.ids[r.view]
            self.con.execute(
                f"UPDATE {quote(self.project)}.ingestion_runs SET status = 'succeeded', finished_at = ?, "
                "files_added = ?, files_changed = ?, files_removed = ?, rows_inserted = ?, "
                "rows_deleted = ?, rows_skipped = ?, rows_quarantined = ?, validation = ? WHERE run_id = ?",
                [
                    now,
                    r.files_added,
                    r.files_changed,
                    r.files_removed,
                    r.rows_inserted,
                    r.rows_deleted,
                    r.rows_skipped,
                    r.rows_quarantined,
                    _json(validation_summary(r.validation)),
                    run_id,
                ],
            )
            record_sources(self.con, self.project, INGEST, run_id, [r.view])
            run_stats.record(self.con, self.project, run_id, r.view, r.statistics)
            self.done.add(r.view)
            self._emit(r.view, "succeeded", now)

    def ended(self, status: str, error: BaseException) -> None:
        """The runs of views not yet written failed or were interrupted: they wrote nothing."""
        report = error.report if isinstance(error, ValidationError) else None
        message = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        for view, run_id in self.ids.items():
            if view in self.done:
                continue
            summary = validation_summary(report) if report is not None and report.view == view else None
            self.con.execute(
                f"UPDATE {quote(self.project)}.ingestion_runs SET status = ?, finished_at = ?, "
                "validation = ?, error = ? WHERE run_id = ?",
                [status, datetime.now(UTC), _json(summary), message, run_id],
            )
            # What the view's table still holds: the snapshot before this run.
            record_sources(self.con, self.project, INGEST, run_id, [view])
            self._emit(view, status, datetime.now(UTC), message)

    def _emit(self, view: str, status: str, finished_at: datetime, error: str | None = None) -> None:
        if self.events is None:
            return
        rows = self.con.execute(
            f"SELECT path FROM {quote(self.project)}.run_sources WHERE kind = ? AND run_id = ? ORDER BY path",
            [INGEST, self.ids[view]],
        ).fetchall()
        self.events.run(
            f"ingest.{view}",
            run_name(INGEST, self.ids[view]),
            self.started_at,
            finished_at,
            status,
            [self.events.file(r[0]) for r in rows],
            [self.events.offline_table(view)],
            error,
        )


@contextmanager
def ingestion_runs(
    con: duckdb.DuckDBPyConnection,
    project: str,
    registry_version: int,
    views: Sequence[str],
    events: LineageEvents | None = None,
) -> Iterator[IngestionRuns]:
    """Start a run per view; one that does not reach ``succeeded`` is recorded failed or interrupted."""
    ensure_tables(con, project)
    # Ingestion holds the only write connection to the file for its whole run, so a run
    # still "running" now belonged to a process that died (killed, power loss).
    con.execute(
        f"UPDATE {quote(project)}.ingestion_runs SET status = 'interrupted', "
        "error = 'the process ended before the run finished' WHERE status = 'running'"
    )
    started_at = datetime.now(UTC)
    runs = IngestionRuns(con, project, started_at, events)
    for view in views:
        row = fetch_one(con, "SELECT nextval(?)", [f"{quote(project)}.ingestion_run_ids"])
        assert row is not None  # a sequence always answers
        runs.ids[view] = int(row[0])
        con.execute(
            f"INSERT INTO {quote(project)}.ingestion_runs (run_id, view, registry_version, status, "
            "started_at) VALUES (?, ?, ?, 'running', ?)",
            [runs.ids[view], view, registry_version, started_at],
        )
    try:
        yield runs
    except Exception as e:
        runs.ended("failed", e)
        raise
    except BaseException as e:
        runs.ended("interrupted", e)
        raise


REJECTED = "runs/rejected_ingestions.jsonl"


def record_rejected(
    store_dir: Path,
    registry_version: int,
    rejected: Mapping[str, FeatureStoreError],
    started_at: datetime,
    events: LineageEvents | None = None,
) -> None:
    """Record ingestions refused before writing (validation, source files) beside the store,
    which they leave untouched; the other views of the call go on.

    One JSON line per refused view: named ``ingest-rejected-N`` (N counts the lines), status
    ``failed``, the view's own validation summary (if validation failed) and its own error.
    """
    if not rejected:
        return
    path = store_dir / REJECTED
    path.parent.mkdir(parents=True, exist_ok=True)
    first = len(read_rejected(store_dir)) + 1
    with path.open("a") as f:
        for i, (view, e) in enumerate(rejected.items()):
            report = e.report if isinstance(e, ValidationError) else None
            line = {
                "view": view,
                "registry_version": registry_version,
                "status": "failed",
                "started_at": started_at,
                "finished_at": datetime.now(UTC),
                "validation": validation_summary(report),
                "error": e.message,
            }
            f.write(json.dumps(line, default=str) + "\n")
            if events is not None:
                out = [events.offline_table(view)]
                name = f"ingest-rejected-{first + i}"
                events.run(f"ingest.{view}", name, started_at, None, "failed", (), out, e.message)


def read_rejected(store_dir: Path) -> list[dict[str, Any]]:
    """The ingestions validation refused, oldest first, each with its ``run`` name."""
    path = store_dir / REJECTED
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"run": f"ingest-rejected-{i}", **line} for i, line in enumerate(lines, 1)]


def record_sources(
    con: duckdb.DuckDBPyConnection, project: str, kind: str, run_id: int, views: Sequence[str]
) -> None:
    """Copy the views' current ``offline_files`` rows into ``run_sources`` for this run."""
    if not views or not table_exists(con, project, "offline_files"):
        return
    ensure_tables(con, project)
    schema = quote(project)
    con.execute(
        f"""INSERT INTO {schema}.run_sources
            SELECT ?, ?, view, path, size, mtime, fingerprint, rows, min_event_ts, max_event_ts
            FROM {schema}.offline_files WHERE list_contains(?, view)""",
        [kind, run_id, list(views)],
    )


def emit_materialization(
    con: duckdb.DuckDBPyConnection, project: str, run_id: int, views: Sequence[str], events: LineageEvents
) -> None:
    """One OpenLineage event for a finished materialization run, its source files as inputs."""
    schema = quote(project)
    row = fetch_one(
        con,
        f"SELECT started_at, finished_at, status, error FROM {schema}.materialization_runs WHERE run_id = ?",
        [run_id],
    )
    if row is None:
        return
    paths = con.execute(
        f"SELECT DISTINCT path FROM {schema}.run_sources WHERE kind = ? AND run_id = ? ORDER BY path",
        [MATERIALIZE, run_id],
    ).fetchall()
    events.run(
        "materialize",
        run_name(MATERIALIZE, run_id),
        row[0],
        row[1],
        row[2],
        [events.file(p[0]) for p in paths] + [events.offline_table(v) for v in views],
        [events.online_view(v) for v in views],
        row[3],
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)
