"""What the store's DuckDB file holds: whether a table exists and its column types.

Read from ``information_schema``, so each owner of a table can tell a store file written
before the table (or one of its columns) existed; below every owner, so all of them can ask.
"""

from __future__ import annotations

import duckdb

from featurestore.storage import fetch_one


def table_exists(con: duckdb.DuckDBPyConnection, project: str, name: str) -> bool:
    row = fetch_one(
        con,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [project, name],
    )
    return bool(row and row[0])


def column_types(con: duckdb.DuckDBPyConnection, project: str, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table of the project ({} if there is no such table)."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ?",
        [project, table],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}
