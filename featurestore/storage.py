"""Open the embedded DuckDB file: one place for locking, retries and clear errors."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from featurestore import migrations
from featurestore.errors import ConfigError, StoreLockedError
from featurestore.migrations import MigrationResult

# DuckDB lets one process write a file, or many read it; a second writer fails at once,
# so wait a little for short holders (an apply, a small ingestion) before giving up.
DEFAULT_LOCK_TIMEOUT = 10.0
# Seconds to wait instead, for every connection of the process (e.g. 0: fail at once).
LOCK_TIMEOUT_ENV = "FEATURESTORE_LOCK_TIMEOUT"


def default_lock_timeout() -> float:
    """FEATURESTORE_LOCK_TIMEOUT if set (seconds, >= 0), else DEFAULT_LOCK_TIMEOUT."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ConfigError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds >= 0")
    return value


def connect(
    path: Path,
    read_only: bool = False,
    lock_timeout: float | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A connection to the store file; raises StoreLockedError if another process keeps it.

    Another process holding the file is waited for, up to ``lock_timeout`` seconds (default:
    ``default_lock_timeout()``); then the error names the file and the holder's pid.
    The file's schema version is checked (see migrations.py): a writable open migrates an
    older file, after a backup; a file of a newer featurestore raises StoreVersionError.
    """
    con = _open(path, read_only, lock_timeout)
    try:
        # Naive timestamps mean UTC everywhere in the store; spills go beside the file.
        # Paths and sizes are bound, never pasted: a folder may be named o'brien.
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET temp_directory = ?", [str(path.parent / "tmp")])
        if memory_limit:  # validated by the config: a size such as 8GB
            con.execute("SET memory_limit = ?", [memory_limit])
        migrations.open_checks(con, path, read_only)
    except BaseException:
        con.close()
        raise
    return con


def migrate(path: Path, dry_run: bool = False, lock_timeout: float | None = None) -> MigrationResult | None:
    """Bring the store file to this featurestore's schema version (``featurestore migrate``).

    None if there is no file yet; ``dry_run`` opens the file read-only and reports the plan.
    """
    if not path.is_file():
        if path.exists():
            raise ConfigError(f"the store {path} ([offline] path) is not a file")
        return None
    con = _open(path, dry_run, lock_timeout)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return migrations.upgrade(con, path, dry_run)
    finally:
        con.close()


def _open(path: Path, read_only: bool, lock_timeout: float | None) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting for another process's lock and mapping DuckDB's errors."""
    if path.is_dir():
        raise ConfigError(f"the store {path} ([offline] path) is a folder: name a DuckDB file in it")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the folder of the store {path} ([offline] path): {e}") from None
    lock_timeout = default_lock_timeout() if lock_timeout is None else lock_timeout
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():  # not a DuckDB file, unreadable, ...
                reason = " ".join(str(e).split()).removeprefix("IO Error: ")
                raise ConfigError(f"cannot open the store {path} ([offline] path): {reason}") from None
            if time.monotonic() >= deadline:
                raise StoreLockedError(_busy_message(path, str(e), lock_timeout)) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        return con


def _busy_message(path: Path, duckdb_error: str, waited: float) -> str:
    pid = re.search(r"PID (\d+)", duckdb_error)
    holder = f" (pid {pid.group(1)})" if pid else ""
    return (
        f"the store {path} is busy: another featurestore process{holder} is using it "
        f"(waited {waited:g}s); try again when it finishes, or set {LOCK_TIMEOUT_ENV} to wait longer"
    )


@contextmanager
def connection(
    path: Path,
    read_only: bool = False,
    lock_timeout: float | None = None,
    memory_limit: str | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """``with connection(path) as con:``; closes the file (and its lock) on exit."""
    con = connect(path, read_only=read_only, lock_timeout=lock_timeout, memory_limit=memory_limit)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def sandbox(path: Path, memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that reads the store's tables and nothing else, for queries users write.

    An in-memory database attaches the store read-only, then turns off external access (no
    file, URL or extension can be read or written, nothing attached) and locks its settings,
    so a query cannot turn them back on.
    """
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET temp_directory = ?", [str(path.parent / "tmp")])
        if memory_limit:
            con.execute("SET memory_limit = ?", [memory_limit])
        # Named like a direct connection's catalog (the file's stem), so queries read the same.
        con.execute(f"ATTACH ? AS {quote(path.stem)} (READ_ONLY)", [str(path)])
        con.execute(f"USE {quote(path.stem)}")
        migrations.open_checks(con, path, read_only=True)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted (names are validated, this guards the rest)."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal, only where a statement cannot take parameters (a view's body)."""
    return "'" + text.replace("'", "''") + "'"


def fetch_one(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> tuple[Any, ...] | None:
    """The first row of a query, or None; fetches the whole result so the connection is free again."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


@dataclass(frozen=True)
class ProjectTables:
    """Base of the classes that each own some of a project's tables (one class per kind of state)."""

    con: duckdb.DuckDBPyConnection
    project: str

    @property
    def schema(self) -> str:
        """The project's schema, quoted for SQL."""
        return quote(self.project)
