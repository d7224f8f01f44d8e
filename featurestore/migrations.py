"""The store file's schema version, and the migrations that bring an older file up to it.

The DuckDB file records the layout of its tables as one number, in the one-row table
``main.featurestore_schema`` (VERSION_TABLE). A file without it is either new (no tables: it
is given CURRENT_VERSION at its first writable open) or was made by featurestore before
versions were recorded (version 0, the layout of commit 7905112).

``storage.connect`` (and ``storage.sandbox``, read-only) calls ``open_checks`` on every
connection; in the common case, a file at CURRENT_VERSION, that is one tiny query.

- a file of a NEWER version is refused in both modes (StoreVersionError), never misread;
- a writable open of an OLDER file migrates it: a copy of the file (and its ``.wal``) is
  kept beside it first (``store.duckdb.v0-backup``), then every pending migration runs in
  ONE transaction with the version's update, so a failure leaves the file as it was;
- a read-only open (servers, reports) cannot migrate: it reads an older file when every
  pending migration says readers of the old layout are compatible (``readers_compatible``),
  else refuses, naming ``featurestore migrate``.

A migration only ever names tables and columns, never the modules that own them: the
owners create their tables lazily (CREATE TABLE IF NOT EXISTS), so a migration changes the
tables that exist and leaves the others for their owners to make in the new layout. To
change a layout: change the owner's CREATE TABLE, append ``Migration(N + 1, ...)`` that
brings existing tables there, and say whether code of N + 1 still reads a file at N.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from featurestore.errors import FeatureStoreError, StoreVersionError

log = logging.getLogger(__name__)

VERSION_TABLE = "featurestore_schema"
MIGRATE_COMMAND = "featurestore migrate --repo DIR"


@dataclass(frozen=True)
class Migration:
    """One step: ``apply`` turns a file of version ``to_version - 1`` into ``to_version``.

    ``readers_compatible``: code of ``to_version`` reads a file still at the version before
    correctly (read-only opens go on); False makes read-only opens of such a file refuse.
    """

    to_version: int
    summary: str
    readers_compatible: bool
    apply: Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class MigrationResult:
    """What a migration did (or, dry, would do) to the store file at ``path``.

    ``from_version`` None: the file had no tables (a new store), so it is simply stamped;
    ``backup``: the copy of the file before (None when nothing was, or would be, changed).
    """

    path: Path
    from_version: int | None
    to_version: int
    backup: Path | None = None
    steps: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


# -- version 1: the layout of commit 7905112, the last before versions were recorded ---------

# Table -> the columns it was created with, in every project's schema.
_V1_TABLES: dict[str, tuple[str, ...]] = {
    "registry_versions": ("version", "content_hash", "created_at", "author", "summary"),
    "registry_objects": ("version", "kind", "name", "fingerprint", "spec"),
    "offline_files": (
        "view", "file_id", "path", "size", "mtime", "fingerprint", "rows", "min_event_ts",
        "max_event_ts", "ingested_at", "checked_at",
    ),
    "offline_views": ("view", "view_fingerprint", "registry_version", "ingested_at"),
    "ingestion_runs": (
        "run_id", "view", "registry_version", "status", "started_at", "finished_at", "files_added",
        "files_changed", "files_removed", "rows_inserted", "rows_deleted", "rows_skipped",
        "rows_quarantined", "validation", "error",
    ),
    "run_sources": (
        "kind", "run_id", "view", "path", "size", "mtime", "fingerprint", "rows", "min_event_ts",
        "max_event_ts",
    ),
    "materialization_runs": (
        "run_id", "registry_version", "views", "start_ts", "end_ts", "incremental", "status",
        "started_at", "finished_at", "rows_read", "entities_written", "entities_kept_newer", "error",
    ),
    "online_watermarks": ("view", "watermark", "run_started_at", "run_id"),
    "online_epoch": ("epoch",),
    "online_removals": ("view", "requested_at"),
    "feature_statistics": (
        "run_id", "view", "feature", "dtype", "kind", "count", "nulls", "distinct_estimate", "min",
        "max", "mean", "std", "quantiles", "top_values", "computed_at",
    ),
    "validation_results": ("view", "path", "checked_at", "policy", "rows", "invalid_rows", "failures"),
}
# Columns older code added to existing tables as it met them: version 1 has them all.
_V1_ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "materialization_runs": (
        ("pid", "INTEGER"), ("host", "VARCHAR"), ("ingestion_runs", "INTEGER[]"),
        ("rows_rejected", "BIGINT"), ("process", "VARCHAR"), ("failed_views", "JSON"),
    ),
    "feature_statistics": (("non_finite", "BIGINT"),),
}
# Per-view tables, by name prefix: offline_<view> holds its rows, retracted_<view> its retractions.
_V1_VIEW_TABLES: dict[str, tuple[str, ...]] = {
    "offline_": ("__event_ts", "__file_id"),
    "retracted_": ("retracted_at",),
}


def _layout_problems(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Why the file is not a store made by featurestore's code of version 1 ([] if it is).

    Our tables must have their columns. Tables and views of others are tolerated beside a
    registry (a user's own table does no harm), but a file without a registry is no store.
    """
    where = "database_name = current_database() AND NOT internal AND NOT temporary"
    tables = con.execute(f"SELECT schema_name, table_name FROM duckdb_tables() WHERE {where}").fetchall()
    views = con.execute(f"SELECT schema_name, view_name FROM duckdb_views() WHERE {where}").fetchall()
    columns: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall():
        columns.setdefault((schema, table), set()).add(column)
    problems: list[str] = []
    others = [f"{schema}.{name}" for schema, name in views]
    for schema, table in sorted(tables):
        if (schema, table) == ("main", VERSION_TABLE):
            continue
        expected = _V1_TABLES.get(table)
        if expected is None:
            prefix = next((p for p in _V1_VIEW_TABLES if table.startswith(p) and len(table) > len(p)), None)
            expected = _V1_VIEW_TABLES[prefix] if prefix else None
        if expected is None:
            others.append(f"{schema}.{table}")
            continue
        missing = [c for c in expected if c not in columns.get((schema, table), set())]
        if missing:
            problems.append(f"table {schema}.{table} lacks column(s) {', '.join(missing)}")
    if not any(table == "registry_versions" for _, table in tables):
        more = f" (and {len(others) - 5} more)" if len(others) > 5 else ""
        found = f", only tables featurestore does not make: {', '.join(sorted(others)[:5])}{more}"
        problems.insert(0, "it has no registry (table registry_versions)" + (found if others else ""))
    return problems


def _v0_to_v1(con: duckdb.DuckDBPyConnection) -> None:
    """Check the file is a store featurestore made (not another DuckDB file), and complete its columns."""
    problems = _layout_problems(con)
    if problems:
        raise StoreVersionError(
            f"not a featurestore store, or a damaged one: {'; '.join(problems[:5])}"
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + "; point [offline] path at a featurestore store, or at a new file"
        )
    for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT internal AND NOT temporary"
    ).fetchall():
        for column, kind in _V1_ADDED_COLUMNS.get(table, ()):
            target = f"{_quote(schema)}.{_quote(table)}"
            con.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {_quote(column)} {kind}")


MIGRATIONS: tuple[Migration, ...] = (
    # Readers compatible: version 1 is the layout code of version 0 already read (the columns
    # it adds were added by that code's writers as they met an older file).
    Migration(1, "check the tables are featurestore's and complete their columns", True, _v0_to_v1),
)
CURRENT_VERSION = MIGRATIONS[-1].to_version

# Threads of one process share DuckDB's database (and its write lock): one migrates at a time.
_migrating = threading.Lock()


# -- reading and writing the version -----------------------------------------------------------


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The file's schema version: 0 if it has tables but no record, None if it has no tables."""
    # Results are fetched whole (fetchall): one left open would block the connection's next query.
    try:  # the common case, a file already versioned: one tiny query
        ((version,),) = con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchall()
    except duckdb.CatalogException:
        version = None
    if version is not None:
        return int(version)
    ((tables,),) = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT internal AND NOT temporary "
        "AND NOT (schema_name = 'main' AND table_name = ?)",
        [VERSION_TABLE],
    ).fetchall()
    return 0 if tables else None


def _written_by(con: duckdb.DuckDBPyConnection) -> str:
    try:
        ((writer,),) = con.execute(f"SELECT max_by(written_by, version) FROM {VERSION_TABLE}").fetchall()
    except duckdb.Error:
        return ""
    return f" (written by featurestore {writer})" if writer else ""


def _record(con: duckdb.DuckDBPyConnection, version: int) -> None:
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS main.{VERSION_TABLE} (
            version INTEGER NOT NULL,
            written_by VARCHAR NOT NULL,      -- the featurestore release that wrote the version
            recorded_at TIMESTAMPTZ NOT NULL)"""
    )
    con.execute(f"DELETE FROM main.{VERSION_TABLE}")
    con.execute(
        f"INSERT INTO main.{VERSION_TABLE} VALUES (?, ?, ?)", [version, _package_version(), datetime.now(UTC)]
    )


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("featurestore")
    except PackageNotFoundError:
        return "unknown"


def pending(from_version: int) -> list[Migration]:
    """The migrations a file of ``from_version`` needs, in order."""
    return [m for m in MIGRATIONS if m.to_version > from_version]


# -- what opening a file does ------------------------------------------------------------------


def open_checks(con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> MigrationResult | None:
    """Called on each new connection: refuse a newer file; migrate (writable) or vet (read-only) an older one.

    Returns what a writable open migrated or stamped, None when nothing changed.
    """
    version = stored_version(con)
    if version == CURRENT_VERSION:
        return None
    if version is not None and version > CURRENT_VERSION:
        raise _newer(con, path, version)
    if read_only:
        if version is not None and not all(m.readers_compatible for m in pending(version)):
            raise StoreVersionError(
                f"the store {path} has schema version {version}; this featurestore ({_package_version()}) "
                f"reads version {CURRENT_VERSION}: run '{MIGRATE_COMMAND}' (DIR: the repo whose "
                "[offline] path is this file) to upgrade it; the file is backed up first"
            )
        return None
    result = upgrade(con, path)
    if result.backup is not None:
        log.warning(
            "featurestore: upgraded the store %s from schema version %s to %s; the file before is kept at %s",
            path, result.from_version, result.to_version, result.backup,
        )
    return result if result.changed else None


def upgrade(con: duckdb.DuckDBPyConnection, path: Path, dry_run: bool = False) -> MigrationResult:
    """Bring the file open on ``con`` (writable unless ``dry_run``) to CURRENT_VERSION.

    The caller holds DuckDB's write lock on the file (a writable connection excludes every
    other process, readers included), so the backup copies a file nothing else changes.
    """
    with _migrating:
        return _upgrade(con, path, dry_run)


def _upgrade(con: duckdb.DuckDBPyConnection, path: Path, dry_run: bool) -> MigrationResult:
    version = stored_version(con)
    if version is not None and version > CURRENT_VERSION:
        raise _newer(con, path, version)
    if version == CURRENT_VERSION:
        return MigrationResult(path, version, CURRENT_VERSION, dry_run=dry_run)
    # A file without tables (None) is new: it is only stamped, there is nothing to keep.
    todo = pending(version) if version is not None else []
    backup = _backup_path(path, version) if version is not None else None
    steps = [m.summary for m in todo]
    if dry_run:
        return MigrationResult(path, version, CURRENT_VERSION, backup, steps, dry_run=True)
    if backup is not None:
        _copy_store(path, backup)
    con.begin()
    try:
        for migration in todo:
            migration.apply(con)
        _record(con, CURRENT_VERSION)
        con.commit()
    except BaseException as e:
        with suppress(duckdb.Error):  # a failed commit has rolled back already
            con.rollback()
        # The file is as it was: the backup is not needed.
        if backup is not None:
            _remove_store_copy(backup)
        if isinstance(e, FeatureStoreError | duckdb.Error):
            reason = e.message if isinstance(e, FeatureStoreError) else " ".join(str(e).split())
            raise StoreVersionError(
                f"cannot migrate the store {path} from schema version {version} to {CURRENT_VERSION}, "
                f"the file is unchanged: {reason}"
            ) from e
        raise
    return MigrationResult(path, version, CURRENT_VERSION, backup, steps)


def _newer(con: duckdb.DuckDBPyConnection, path: Path, version: int) -> StoreVersionError:
    return StoreVersionError(
        f"the store {path} has schema version {version}{_written_by(con)}, newer than this "
        f"featurestore ({_package_version()}) reads (up to {CURRENT_VERSION}): upgrade featurestore "
        "to use it, or point [offline] path at another store"
    )


# -- the backup ----------------------------------------------------------------------------------


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _backup_path(path: Path, version: int) -> Path:
    """``store.duckdb.v0-backup``, or ``.v0-backup-2`` and so on: an earlier backup is never replaced."""
    base = path.with_name(f"{path.name}.v{version}-backup")
    candidate, n = base, 1
    while candidate.exists() or _wal(candidate).exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _copy_store(path: Path, backup: Path) -> None:
    """Copy the file and its write-ahead log (the two together are the committed state)."""
    pairs = [(path, backup)] + ([(_wal(path), _wal(backup))] if _wal(path).exists() else [])
    try:
        for source, target in pairs:
            partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
            try:
                shutil.copyfile(source, partial)
                with open(partial, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    except OSError as e:
        _remove_store_copy(backup)
        raise StoreVersionError(
            f"cannot back up the store {path} to {backup} before migrating it, nothing changed: {e}"
        ) from None


def _remove_store_copy(backup: Path) -> None:
    backup.unlink(missing_ok=True)
    _wal(backup).unlink(missing_ok=True)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
