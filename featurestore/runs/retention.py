"""Retention: delete the run bookkeeping nothing needs any more (``featurestore gc``).

``lineage/retention.py`` finds what Redis still serves; this module deletes the rest.

Every ingestion and materialization adds rows (``ingestion_runs``, ``materialization_runs``,
``run_sources`` with one row per file per run, ``feature_statistics``, ``validation_results``),
most of them for runs that changed nothing. ``collect`` keeps:

- the materialization runs whose values Redis still serves (the run id in each value's
  header, read with SCAN), the runs behind each view's watermark, runs still running, and
  the ``keep_runs`` most recent; with each, its source snapshot and the ingestion runs that fed it;
- per view, the ``keep_runs`` most recent ingestion runs, the latest with statistics
  (``drift --current latest``), and for each recorded training set the run that left the
  view's data as the training set read it (same files, same fingerprints);
- ``validation_results`` newer than the oldest ingestion run kept for the view, and the
  latest result of each file.

Everything else of those tables is deleted in one transaction. Registry versions, offline
tables, training set records and quarantined rows are never touched, so reproducing a
training set and the lineage of a served value work as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from featurestore.catalog import column_types, table_exists
from featurestore.runs import INGEST, MATERIALIZE
from featurestore.storage import quote

DEFAULT_KEEP_RUNS = 10
TABLES = ("ingestion_runs", "materialization_runs", "run_sources", "feature_statistics", "validation_results")


@dataclass(frozen=True)
class GcResult:
    """What ``collect`` deleted (rows per table) and which runs it kept."""

    deleted: dict[str, int] = field(default_factory=dict)
    kept_ingestion_runs: tuple[int, ...] = ()
    kept_materialization_runs: tuple[int, ...] = ()
    # Spark engine: warehouse folders no view and no recorded training set reads (offline/spark/warehouse.py).
    warehouse_folders_deleted: int = 0

    @property
    def rows_deleted(self) -> int:
        return sum(self.deleted.values())


def collect(
    con: duckdb.DuckDBPyConnection,
    project: str,
    pinned: Iterable[int],
    training_sets: Iterable[dict[str, Any]],
    keep_runs: int = DEFAULT_KEEP_RUNS,
) -> GcResult:
    """Delete the bookkeeping rows no kept run needs (see the module docstring); one transaction.

    ``pinned``: the materialization runs kept whatever their age (the caller knows them: the
    runs Redis still serves values of, and the runs behind the views' watermarks).
    """
    s = quote(project)
    has = {t: table_exists(con, project, t) for t in TABLES}
    kept_m: set[int] = set()
    if has["materialization_runs"]:
        kept_m = set(pinned) | _ids(
            con,
            f"""SELECT run_id FROM (SELECT run_id, status, row_number() OVER (ORDER BY run_id DESC) AS k
                FROM {s}.materialization_runs) WHERE k <= ? OR status = 'running'""",
            [keep_runs],
        )
    kept_i: set[int] = set()
    if has["ingestion_runs"]:
        kept_i = _ids(
            con,
            f"""SELECT run_id FROM (SELECT run_id, status,
                    row_number() OVER (PARTITION BY view ORDER BY run_id DESC) AS k
                FROM {s}.ingestion_runs) WHERE k <= ? OR status = 'running'""",
            [keep_runs],
        )
        if kept_m and "ingestion_runs" in _columns(con, project, "materialization_runs"):
            kept_i |= _ids(
                con,
                f"SELECT unnest(ingestion_runs) FROM {s}.materialization_runs WHERE list_contains(?, run_id)",
                [sorted(kept_m)],
            )
        if has["feature_statistics"]:
            kept_i |= _ids(con, f"SELECT max(run_id) FROM {s}.feature_statistics GROUP BY view")
        if has["run_sources"]:
            kept_i |= _training_set_runs(con, project, training_sets)

    deleted: dict[str, int] = {}
    con.execute("BEGIN TRANSACTION")
    try:
        keep_i, keep_m = sorted(kept_i), sorted(kept_m)
        if has["ingestion_runs"]:
            deleted["ingestion_runs"] = _delete(
                con, f"{s}.ingestion_runs", "NOT list_contains(?, run_id)", [keep_i]
            )
            if has["feature_statistics"]:
                deleted["feature_statistics"] = _delete(
                    con, f"{s}.feature_statistics", "NOT list_contains(?, run_id)", [keep_i]
                )
        if has["materialization_runs"]:
            deleted["materialization_runs"] = _delete(
                con, f"{s}.materialization_runs", "NOT list_contains(?, run_id)", [keep_m]
            )
        if has["run_sources"]:
            deleted["run_sources"] = _delete(
                con,
                f"{s}.run_sources",
                "(kind = ? AND NOT list_contains(?, run_id)) OR (kind = ? AND NOT list_contains(?, run_id))",
                [INGEST, keep_i, MATERIALIZE, keep_m],
            )
        if has["validation_results"]:
            deleted["validation_results"] = _old_validation_results(
                con, project, keep_i, has["ingestion_runs"]
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return GcResult(deleted, tuple(keep_i), tuple(keep_m))


def _training_set_runs(
    con: duckdb.DuckDBPyConnection, project: str, training_sets: Iterable[dict[str, Any]]
) -> set[int]:
    """Per training set and view, the first ingestion run that left exactly the files it read."""
    wanted: set[tuple[str, str]] = set()
    for record in training_sets:
        for view, files in record["manifest"]["sources"].items():
            wanted.add((view, _signature((str(f["path"]), str(f["fingerprint"])) for f in files)))
    if not wanted:
        return set()
    rows = con.execute(
        f"""SELECT view, min(run_id) FROM (
                SELECT run_id, view, string_agg(path || chr(0) || fingerprint, chr(1) ORDER BY path) AS files
                FROM {quote(project)}.run_sources WHERE kind = ? GROUP BY run_id, view)
            WHERE list_contains(?, view || chr(2) || files) GROUP BY view, files""",
        [INGEST, [f"{v}\x02{sig}" for v, sig in wanted]],
    ).fetchall()
    return {int(r[1]) for r in rows}


def _signature(files: Iterable[tuple[str, str]]) -> str:
    return "\x01".join(f"{path}\x00{fingerprint}" for path, fingerprint in sorted(files))


def _old_validation_results(
    con: duckdb.DuckDBPyConnection, project: str, kept_ingestion: list[int], has_runs: bool
) -> int:
    """Results older than the view's oldest kept ingestion run, except each file's latest."""
    s = quote(project)
    if not has_runs:
        return 0
    return _delete(
        con,
        f"{s}.validation_results AS v",
        f"""checked_at < coalesce((SELECT min(started_at) FROM {s}.ingestion_runs AS r
                                    WHERE r.view = v.view AND list_contains(?, r.run_id)), 'infinity')
            AND checked_at < (SELECT max(checked_at) FROM {s}.validation_results AS w
                              WHERE w.view = v.view AND w.path = v.path)""",
        [kept_ingestion],
    )


def _delete(con: duckdb.DuckDBPyConnection, table: str, where: str, params: list[Any]) -> int:
    row = con.execute(f"DELETE FROM {table} WHERE {where}", params).fetchone()
    return int(row[0]) if row else 0


def _ids(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> set[int]:
    return {int(r[0]) for r in con.execute(sql, params or []).fetchall() if r[0] is not None}


def _columns(con: duckdb.DuckDBPyConnection, project: str, table: str) -> set[str]:
    return set(column_types(con, project, table))
