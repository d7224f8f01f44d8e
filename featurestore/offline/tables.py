"""Names and bookkeeping tables of the offline store inside the project's DuckDB schema."""

from __future__ import annotations

from datetime import datetime

import duckdb

from featurestore.storage import fetch_one, quote

# Reserved columns of an ingested view table; user columns never start with "__".
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
SEQ = "__seq"  # ingestion order: file id << 32 | row number in the file; the last tie-breaker
FILE_ID = "__file_id"


def view_table(project: str, view: str) -> str:
    return f"{quote(project)}.{quote('offline_' + view)}"


def retracted_table(project: str, view: str) -> str:
    """Keys whose rows a changed or removed source file took away, until Redis is corrected."""
    return f"{quote(project)}.{quote('retracted_' + view)}"


def retract_keys(
    con: duckdb.DuckDBPyConnection, project: str, view: str, keys: list[str], where: str
) -> None:
    """Record the distinct ``keys`` of the view's rows matching ``where``, before they are deleted.

    Online values only ever move forward in time (newer wins), so a value whose source row
    disappeared would be served forever; the next materialization rewrites these keys from
    the rows that remain, or deletes them.
    """
    cols = ", ".join(quote(k) for k in keys)
    table, retracted = view_table(project, view), retracted_table(project, view)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {retracted} AS SELECT {cols}, now() AS retracted_at FROM {table} LIMIT 0"
    )
    con.execute(
        f"INSERT INTO {retracted} SELECT DISTINCT {cols}, now() FROM {table} "
        f"WHERE {where} AND {' AND '.join(quote(k) + ' IS NOT NULL' for k in keys)}"
    )


def has_retractions(con: duckdb.DuckDBPyConnection, project: str, view: str) -> bool:
    if not table_exists(con, project, "retracted_" + view):
        return False
    return fetch_one(con, f"SELECT 1 FROM {retracted_table(project, view)} LIMIT 1") is not None


def forget_retractions(con: duckdb.DuckDBPyConnection, project: str, view: str, until: datetime) -> None:
    """The retractions recorded up to ``until`` are corrected in Redis: drop them."""
    con.execute(f"DELETE FROM {retracted_table(project, view)} WHERE retracted_at <= ?", [until])


def column_types(con: duckdb.DuckDBPyConnection, project: str, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table of the project ({} if there is no such table)."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ?",
        [project, table],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def ensure_state_tables(con: duckdb.DuckDBPyConnection, project: str) -> None:
    schema = quote(project)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(
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
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {schema}.offline_views (
            view VARCHAR PRIMARY KEY,
            view_fingerprint VARCHAR NOT NULL,
            registry_version INTEGER NOT NULL,
            ingested_at TIMESTAMPTZ NOT NULL)"""
    )


def table_exists(con: duckdb.DuckDBPyConnection, project: str, name: str) -> bool:
    row = fetch_one(
        con,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [project, name],
    )
    return bool(row and row[0])
