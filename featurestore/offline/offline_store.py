"""The offline store: the one owner of the offline tables in the project's DuckDB schema.

- ``offline_<view>``: a view's ingested rows (reserved columns in ``layout.py``);
- ``offline_files``: each ingested source file (path, size, mtime, content fingerprint, rows,
  event-time range), so the next ingestion reads only what changed;
- ``offline_views``: the view fingerprint each table was built for (a change rebuilds it);
- ``retracted_<view>``: keys whose rows a changed or removed file took away, until the next
  materialization corrects Redis.

An ingestion goes plan (``plan.py``: which files changed) -> prepare (``prepare.py``: read
and validate them, writing nothing) -> write (``write.py``: one transaction) with quarantine
(``quarantine.py``: invalid rows and unreadable files set aside beside the store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from featurestore.catalog import column_types, table_exists
from featurestore.config import SparkSettings
from featurestore.definitions import FeatureView
from featurestore.errors import ValidationError
from featurestore.offline import quarantine
from featurestore.offline.layout import EVENT_TS, retracted_table, view_table
from featurestore.offline.plan import FileState, source_files_for
from featurestore.offline.prepare import PreparedIngest, Progress, Validator, prepare_view
from featurestore.offline.write import IngestResult, write_view
from featurestore.source_files import SourceFiles
from featurestore.storage import ProjectTables, fetch_one, quote


@dataclass(frozen=True)
class IngestedFile:
    """One row of ``offline_files``, as lineage shows it."""

    view: str
    path: str
    size: int
    mtime: float
    fingerprint: str
    rows: int
    min_event_ts: datetime | None
    max_event_ts: datetime | None


@dataclass(frozen=True)
class OfflineStore(ProjectTables):
    """The offline tables of one project in one DuckDB connection (see the module docstring).

    With ``spark`` settings (the Spark engine), a view's rows live in the Parquet warehouse and
    ``offline_<view>`` is a DuckDB view over them (offline/spark/warehouse.py); Spark validates
    and writes them. A view stored by the other engine is rebuilt.
    """

    spark: SparkSettings | None = None
    # The store's folder, whose push log (push_log.py) each view's ingestion reads after its
    # source's files; None: pushed files are not read.
    store_dir: Path | None = None

    @property
    def engine(self) -> str:
        return "duckdb" if self.spark is None else "spark"

    @property
    def source_files(self) -> SourceFiles:
        """Where this engine lists and reads source files (remote URIs: Spark only)."""
        return source_files_for(self.spark)

    # -- ingestion -------------------------------------------------------------------------

    def ingest(
        self,
        view: FeatureView,
        registry_version: int,
        repo: Path,
        progress: Progress | None = None,
        store_dir: Path | None = None,
    ) -> IngestResult:
        """Bring ``view``'s DuckDB table up to date with its source files.

        New and changed files are validated first, batch by batch; with the view's policy
        "fail" one invalid row means nothing is written, with "quarantine" the invalid rows
        go to a Parquet file under ``store_dir/quarantine`` and the rest are ingested.
        """
        store_dir = store_dir or repo / ".featurestore"
        prepared = self.prepare(view, repo, progress)
        if prepared.failed:
            raise self.rejection(prepared, store_dir)
        return self.write(prepared, registry_version, store_dir, progress)

    def prepare(
        self,
        view: FeatureView,
        repo: Path,
        progress: Progress | None = None,
        with_checks: Callable[[FeatureView], FeatureView] | None = None,
        validate: Validator | None = None,
    ) -> PreparedIngest:
        """Decide which files changed and validate them; only reads (see ``prepare.prepare_view``)."""
        if validate is None and self.spark is not None:
            from featurestore.offline.spark.ingest import validator

            validate = validator(self.spark)
        return prepare_view(self, view, repo, progress, with_checks, validate)

    def rejection(self, prepared: PreparedIngest, store_dir: Path) -> ValidationError:
        """The error of a view that failed validation under policy "fail"; its report is kept."""
        return quarantine.rejection(prepared.report, store_dir)

    def write(
        self,
        prepared: PreparedIngest,
        registry_version: int,
        store_dir: Path,
        progress: Progress | None = None,
    ) -> IngestResult:
        """Write what ``prepare`` decided: quarantine files, then one transaction."""
        if self.spark is not None:
            from featurestore.offline.spark import ingest

            return ingest.write_view(self, prepared, registry_version, store_dir, self.spark, progress)
        return write_view(self, prepared, registry_version, store_dir, progress)

    # -- tables ----------------------------------------------------------------------------

    def ensure_tables(self) -> None:
        schema = self.schema
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.offline_files (
                view VARCHAR NOT NULL,
                file_id INTEGER NOT NULL,
                path VARCHAR NOT NULL,
                size BIGINT NOT NULL,
                mtime DOUBLE NOT NULL,
                fingerprint VARCHAR NOT NULL,
                rows BIGINT NOT NULL,
                min_event_ts TIMESTAMPTZ,
                max_event_ts TIMESTAMPTZ,
                ingested_at TIMESTAMPTZ NOT NULL,
                checked_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (view, path))"""
        )
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.offline_views (
                view VARCHAR PRIMARY KEY,
                view_fingerprint VARCHAR NOT NULL,
                registry_version INTEGER NOT NULL,
                ingested_at TIMESTAMPTZ NOT NULL)"""
        )

    def has_files(self) -> bool:
        """Whether any ingestion recorded its files (the tables exist)."""
        return table_exists(self.con, self.project, "offline_files") and table_exists(
            self.con, self.project, "offline_views"
        )

    def has_view_table(self, view: str) -> bool:
        """Whether ``view`` has been ingested (its table exists)."""
        return table_exists(self.con, self.project, "offline_" + view)

    def ingested_fingerprint(self, view: str) -> str | None:
        """The view fingerprint the table was built for, or None if never ingested."""
        if not table_exists(self.con, self.project, "offline_views"):
            return None
        row = fetch_one(
            self.con,
            f"SELECT view_fingerprint FROM {self.schema}.offline_views WHERE view = ?",
            [view],
        )
        return None if row is None else str(row[0])

    def up_to_date(self, view: FeatureView) -> bool:
        """Whether the view's table was built for this definition of it, by this engine."""
        kind = self.stored_kind(view.name)
        wanted = "VIEW" if self.engine == "spark" else "BASE TABLE"
        built = self.ingested_fingerprint(view.name) == view.fingerprint and kind == wanted
        return built and not self.lost_folders(view.name)

    def lost_folders(self, view: str) -> list[str]:
        """Spark engine: the view's live warehouse folders that are gone (see warehouse.lost_dirs)."""
        if self.spark is None or self.stored_kind(view) != "VIEW":  # not built by Spark: no folders
            return []
        from featurestore.offline.spark.warehouse import lost_dirs

        return lost_dirs(self.con, self.project, view, self.spark.warehouse)

    def stored_kind(self, view: str) -> str | None:
        """How ``offline_<view>`` is stored: "BASE TABLE" (DuckDB engine), "VIEW" (Spark), or None."""
        row = fetch_one(
            self.con,
            "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [self.project, "offline_" + view],
        )
        return None if row is None else str(row[0])

    def drop_view_table(self, view: str) -> None:
        """Drop ``offline_<view>``, a table or (Spark engine) a view over the warehouse."""
        kind = self.stored_kind(view)
        if kind is not None:
            what = "VIEW" if kind == "VIEW" else "TABLE"
            self.con.execute(f"DROP {what} {view_table(self.project, view)}")

    def known_files(self, view: str) -> dict[str, FileState]:
        """The view's ingested files by path."""
        if not table_exists(self.con, self.project, "offline_files"):
            return {}
        rows = self.con.execute(
            f"SELECT path, file_id, size, mtime, epoch(checked_at) FROM {self.schema}.offline_files "
            "WHERE view = ?",
            [view],
        ).fetchall()
        return {path: FileState(fid, size, mtime, at) for path, fid, size, mtime, at in rows}

    def stored_fingerprint(self, view: str, path: str) -> str | None:
        """The content fingerprint the file had when ingested, None if it was not."""
        row = fetch_one(
            self.con,
            f"SELECT fingerprint FROM {self.schema}.offline_files WHERE view = ? AND path = ?",
            [view, path],
        )
        return None if row is None else str(row[0])

    def files_ingested_since(self, view: str, since: datetime) -> list[int]:
        """The ids of the view's files ingested at or after ``since`` (an incremental run's late files)."""
        rows = self.con.execute(
            f"SELECT file_id FROM {self.schema}.offline_files WHERE view = ? AND ingested_at >= ? "
            "ORDER BY file_id",
            [view, since],
        ).fetchall()
        return [int(r[0]) for r in rows]

    def ingested_files(self) -> list[IngestedFile] | None:
        """Every view's ingested files by view and path; None if nothing was ever ingested."""
        if not table_exists(self.con, self.project, "offline_files"):
            return None
        rows = self.con.execute(
            f"SELECT view, path, size, mtime, fingerprint, rows, min_event_ts, max_event_ts "
            f"FROM {self.schema}.offline_files ORDER BY view, path"
        ).fetchall()
        return [IngestedFile(*row) for row in rows]

    def newest_event_before(self, view: str, before: datetime) -> datetime | None:
        """The newest event time of the view's rows before ``before``; None if none (or not ingested)."""
        if not self.has_view_table(view):
            return None
        row = fetch_one(
            self.con,
            f"SELECT max({EVENT_TS}) FROM {view_table(self.project, view)} WHERE {EVENT_TS} < ?",
            [before],
        )
        return row[0] if row else None

    def key_types(self, table: str, keys: list[str]) -> list[str] | None:
        """The types of ``keys`` in the table, or None if it does not exist or lacks one of them."""
        types = column_types(self.con, self.project, table)
        return [types[k] for k in keys] if all(k in types for k in keys) else None

    # -- retractions -----------------------------------------------------------------------

    def retract_keys(self, view: str, keys: list[str], where: str) -> None:
        """Record the distinct ``keys`` of the view's rows matching ``where``, before they are deleted.

        Online values only ever move forward in time (newer wins), so a value whose source row
        disappeared would be served forever; the next materialization rewrites these keys from
        the rows that remain, or deletes them.
        """
        cols = ", ".join(quote(k) for k in keys)
        table, retracted = view_table(self.project, view), retracted_table(self.project, view)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {retracted} AS SELECT {cols}, now() AS retracted_at "
            f"FROM {table} LIMIT 0"
        )
        self.con.execute(
            f"INSERT INTO {retracted} SELECT DISTINCT {cols}, now() FROM {table} "
            f"WHERE {where} AND {' AND '.join(quote(k) + ' IS NOT NULL' for k in keys)}"
        )

    def retracted_keys(self, view: str, keys: list[str]) -> pa.Table:
        """The distinct ``keys`` of the view's pending retractions (its table must exist)."""
        cols = ", ".join(quote(k) for k in keys)
        retracted = retracted_table(self.project, view)
        return self.con.sql(f"SELECT DISTINCT {cols} FROM {retracted}").to_arrow_table()

    def drop_retractions(self, view: str) -> None:
        """Forget every pending retraction of ``view`` (its keys changed: another layout)."""
        self.con.execute(f"DROP TABLE {retracted_table(self.project, view)}")

    def has_retractions(self, view: str) -> bool:
        if not table_exists(self.con, self.project, "retracted_" + view):
            return False
        return fetch_one(self.con, f"SELECT 1 FROM {retracted_table(self.project, view)} LIMIT 1") is not None

    def forget_retractions(self, view: str, until: datetime) -> None:
        """The retractions recorded up to ``until`` are corrected in Redis: drop them."""
        self.con.execute(
            f"DELETE FROM {retracted_table(self.project, view)} WHERE retracted_at <= ?", [until]
        )

    # -- files (during a write, inside its transaction) ------------------------------------

    def touch_file(self, view: str, path: str, mtime: float, checked_at: datetime) -> None:
        """A file touched but not changed keeps its rows; its mtime and check time move on."""
        self.con.execute(
            f"UPDATE {self.schema}.offline_files SET mtime = ?, checked_at = ? "
            "WHERE view = ? AND path = ?",
            [mtime, checked_at, view, path],
        )

    def record_view(self, view: FeatureView, registry_version: int) -> None:
        """The definition the view's table was now built for."""
        self.con.execute(
            f"INSERT OR REPLACE INTO {self.schema}.offline_views VALUES (?, ?, ?, ?)",
            [view.name, view.fingerprint, registry_version, datetime.now(UTC)],
        )

    def forget_files(self, view: str, path: str | None = None) -> None:
        """Drop the ``offline_files`` rows of one file of the view, or of all of them."""
        if path is None:
            self.con.execute(f"DELETE FROM {self.schema}.offline_files WHERE view = ?", [view])
        else:
            self.con.execute(
                f"DELETE FROM {self.schema}.offline_files WHERE view = ? AND path = ?", [view, path]
            )

    def record_file(
        self,
        view: str,
        file_id: int,
        path: str,
        stat: tuple[int, float],
        fingerprint: str,
        rows: int,
        event_range: tuple[datetime | None, datetime | None],
        checked_at: datetime,
    ) -> None:
        """One ingested file: its size and mtime (``stat``) and fingerprint as read at ``checked_at``."""
        self.con.execute(
            f"INSERT INTO {self.schema}.offline_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                view,
                file_id,
                path,
                stat[0],
                stat[1],
                fingerprint,
                rows,
                event_range[0],
                event_range[1],
                datetime.now(UTC),
                checked_at,
            ],
        )
