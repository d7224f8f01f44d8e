"""Ingestion runs: each ingestion of a view (``ingestion_runs``), and the ingestions refused
before writing (``runs/rejected_ingestions.jsonl`` beside the store, which they leave untouched).

Each run also records its source snapshot (``sources.py``) and its statistics (``statistics.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb

from featurestore.catalog import table_exists
from featurestore.errors import FeatureStoreError, ValidationError
from featurestore.profiling import FeatureStats
from featurestore.runs import INGEST, RunEvents, run_name
from featurestore.runs.sources import RunSourceState
from featurestore.runs.statistics import StatisticsState
from featurestore.storage import ProjectTables, fetch_one
from featurestore.validation import ViewReport


class IngestCounts(Protocol):
    """What a run records of one view's ingestion (``offline.write.IngestResult`` has it)."""

    @property
    def view(self) -> str: ...
    @property
    def files_added(self) -> int: ...
    @property
    def files_changed(self) -> int: ...
    @property
    def files_removed(self) -> int: ...
    @property
    def rows_inserted(self) -> int: ...
    @property
    def rows_deleted(self) -> int: ...
    @property
    def rows_skipped(self) -> int: ...
    @property
    def rows_quarantined(self) -> int: ...
    @property
    def validation(self) -> ViewReport | None: ...
    @property
    def statistics(self) -> tuple[FeatureStats, ...]: ...


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


@dataclass(frozen=True)
class IngestionRun:
    """One row of ``ingestion_runs``, as lineage shows it."""

    run_id: int
    view: str
    registry_version: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_inserted: int | None
    rows_deleted: int | None
    rows_quarantined: int | None
    validation: dict[str, Any] | None
    error: str | None
    changed: bool  # failed, or wrote something (see CHANGED)


# A run changed something when it failed or wrote rows; scheduled runs over untouched files
# are recorded too, but listing them would push the runs that mattered out of view.
CHANGED = (
    "(status <> 'succeeded' OR coalesce(files_added, 0) + coalesce(files_changed, 0) "
    "+ coalesce(files_removed, 0) + coalesce(rows_inserted, 0) + coalesce(rows_deleted, 0) > 0)"
)


@dataclass(frozen=True)
class IngestionRunState(ProjectTables):
    """Owns ``ingestion_runs`` and its id sequence."""

    @property
    def _table(self) -> str:
        return f"{self.schema}.ingestion_runs"

    def ensure_table(self) -> None:
        schema = self.schema
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self.con.execute(f"CREATE SEQUENCE IF NOT EXISTS {schema}.ingestion_run_ids START 1")
        self.con.execute(
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

    def mark_interrupted(self) -> None:
        """Record as interrupted every run still "running"."""
        self.con.execute(
            f"UPDATE {self._table} SET status = 'interrupted', "
            "error = 'the process ended before the run finished' WHERE status = 'running'"
        )

    def start(self, view: str, registry_version: int, started_at: datetime) -> int:
        """A new "running" run of ``view``; its id."""
        row = fetch_one(self.con, "SELECT nextval(?)", [f"{self.schema}.ingestion_run_ids"])
        assert row is not None  # a sequence always answers
        run_id = int(row[0])
        self.con.execute(
            f"INSERT INTO {self._table} (run_id, view, registry_version, status, started_at) "
            "VALUES (?, ?, ?, 'running', ?)",
            [run_id, view, registry_version, started_at],
        )
        return run_id

    def succeeded(self, run_id: int, r: IngestCounts, finished_at: datetime) -> None:
        self.con.execute(
            f"UPDATE {self._table} SET status = 'succeeded', finished_at = ?, "
            "files_added = ?, files_changed = ?, files_removed = ?, rows_inserted = ?, "
            "rows_deleted = ?, rows_skipped = ?, rows_quarantined = ?, validation = ? WHERE run_id = ?",
            [
                finished_at,
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

    def ended(self, run_id: int, status: str, summary: dict[str, Any] | None, error: str) -> None:
        self.con.execute(
            f"UPDATE {self._table} SET status = ?, finished_at = ?, validation = ?, error = ? "
            "WHERE run_id = ?",
            [status, datetime.now(UTC), _json(summary), error, run_id],
        )

    def view_and_status(self, run_id: int) -> tuple[str, str] | None:
        """The view a run ingested and its status, None if there is no such run."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return None
        row = fetch_one(self.con, f"SELECT view, status FROM {self._table} WHERE run_id = ?", [run_id])
        return None if row is None else (str(row[0]), str(row[1]))

    def latest_id(self) -> int | None:
        """The id of the latest run, None if there is none."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return None
        row = fetch_one(self.con, f"SELECT max(run_id) FROM {self._table}")
        return None if row is None or row[0] is None else int(row[0])

    def page(self, limit: int, offset: int = 0, view: str | None = None) -> tuple[list[IngestionRun], int]:
        """Runs newest first, ``limit`` from ``offset`` (of ``view`` only, if given), and how many in all."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return [], 0
        params: list[object] = [] if view is None else [view]
        where = "true" if view is None else "view = ?"
        row = fetch_one(self.con, f"SELECT count(*) FROM {self._table} WHERE {where}", params)
        rows = self.con.execute(
            f"""SELECT run_id, view, registry_version, status, started_at, finished_at, rows_inserted,
                       rows_deleted, rows_quarantined, validation, error, {CHANGED}
                FROM {self._table} WHERE {where} ORDER BY run_id DESC LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        ).fetchall()
        return [_run(row) for row in rows], int(row[0]) if row else 0

    def get(self, run_id: int) -> IngestionRun | None:
        """One run, None if there is no such run."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return None
        row = fetch_one(
            self.con,
            f"""SELECT run_id, view, registry_version, status, started_at, finished_at, rows_inserted,
                       rows_deleted, rows_quarantined, validation, error, {CHANGED}
                FROM {self._table} WHERE run_id = ?""",
            [run_id],
        )
        return None if row is None else _run(row)

    def recent(self, per_view: int, name: str) -> list[IngestionRun]:
        """The ``per_view`` latest runs of each view that changed something, and the run ``name``."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return []
        rows = self.con.execute(
            f"""SELECT run_id, view, registry_version, status, started_at, finished_at, rows_inserted,
                       rows_deleted, rows_quarantined, validation, error, changed FROM (
                  SELECT *, row_number() OVER (PARTITION BY view, changed ORDER BY run_id DESC) AS k
                  FROM (SELECT *, {CHANGED} AS changed FROM {self._table}))
                WHERE (changed AND k <= ?) OR ? = 'ingest-' || run_id ORDER BY run_id""",
            [per_view, name],
        ).fetchall()
        return [_run(row) for row in rows]

    def unchanged_per_view(self) -> dict[str, int]:
        """View -> how many of its runs changed nothing."""
        if not table_exists(self.con, self.project, "ingestion_runs"):
            return {}
        rows = self.con.execute(
            f"SELECT view, count(*) FROM {self._table} WHERE NOT {CHANGED} GROUP BY view"
        ).fetchall()
        return {str(v): int(n) for v, n in rows}


def _run(row: tuple[Any, ...]) -> IngestionRun:
    """An ``IngestionRun`` from a row of the columns its readers select, in its fields' order."""
    run_id, view, version, status, started, finished, inserted, deleted, quarantined = row[:9]
    validation, error, changed = row[9:]
    return IngestionRun(
        int(run_id),
        str(view),
        int(version),
        str(status),
        started,
        finished,
        inserted,
        deleted,
        quarantined,
        None if validation is None else json.loads(validation),
        error,
        bool(changed),
    )


@dataclass
class IngestionRuns:
    """The runs of one ``FeatureStore.ingest`` call, one per view; see ``ingestion_runs``."""

    con: duckdb.DuckDBPyConnection
    project: str
    started_at: datetime
    events: RunEvents | None = None
    ids: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    @property
    def _runs(self) -> IngestionRunState:
        return IngestionRunState(self.con, self.project)

    @property
    def _sources(self) -> RunSourceState:
        return RunSourceState(self.con, self.project)

    def succeeded(self, *results: IngestCounts) -> None:
        """Record each view's counts and validation, and the source snapshot it left."""
        now = datetime.now(UTC)
        for r in results:
            run_id = self.ids[r.view]
            self._runs.succeeded(run_id, r, now)
            self._sources.record(INGEST, run_id, [r.view])
            StatisticsState(self.con, self.project).record(run_id, r.view, r.statistics)
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
            self._runs.ended(run_id, status, summary, message)
            # What the view's table still holds: the snapshot before this run.
            self._sources.record(INGEST, run_id, [view])
            self._emit(view, status, datetime.now(UTC), message)

    def _emit(self, view: str, status: str, finished_at: datetime, error: str | None = None) -> None:
        if self.events is None:
            return
        paths = self._sources.paths(INGEST, self.ids[view])
        self.events.run(
            f"ingest.{view}",
            run_name(INGEST, self.ids[view]),
            self.started_at,
            finished_at,
            status,
            [self.events.file(p) for p in paths],
            [self.events.offline_table(view)],
            error,
        )


@contextmanager
def ingestion_runs(
    con: duckdb.DuckDBPyConnection,
    project: str,
    registry_version: int,
    views: Sequence[str],
    events: RunEvents | None = None,
) -> Iterator[IngestionRuns]:
    """Start a run per view; one that does not reach ``succeeded`` is recorded failed or interrupted."""
    state = IngestionRunState(con, project)
    state.ensure_table()
    RunSourceState(con, project).ensure_table()
    # Ingestion holds the only write connection to the file for its whole run, so a run
    # still "running" now belonged to a process that died (killed, power loss).
    state.mark_interrupted()
    started_at = datetime.now(UTC)
    runs = IngestionRuns(con, project, started_at, events)
    for view in views:
        runs.ids[view] = state.start(view, registry_version, started_at)
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
    events: RunEvents | None = None,
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


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)
