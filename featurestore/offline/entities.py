"""Entity frames: the labelled events a training set is built for, in any form users have them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featurestore.errors import InvalidRequestError
from featurestore.storage import literal, quote, sandbox

ROW = "__fs_row"  # input order, so every entity row comes back once, where it was
TS = "__fs_ts"  # the entity timestamp normalized to TIMESTAMPTZ (UTC)
ENTITY_VIEW = "__fs_entities"

_INTEGER = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}


@dataclass(frozen=True)
class EntityFrame:
    """An entity frame registered in a DuckDB connection as ``ENTITY_VIEW``."""

    columns: dict[str, str]  # user column -> DuckDB type, in order
    description: str  # for the manifest: "pandas DataFrame", "path/to/file.parquet", ...

    def key_family(self, column: str) -> str:
        return type_family(self.columns[column])


def register_entities(
    con: duckdb.DuckDBPyConnection,
    entity_df: Any,
    ts_column: str,
    store: Path,
    memory_limit: str | None = None,
) -> EntityFrame:
    """Register ``entity_df`` (DataFrame, Arrow table, Parquet path or SQL) with a row index.

    A SQL query runs apart, in ``storage.sandbox`` over the ``store`` file: see ``query_entities``.
    """
    if isinstance(entity_df, pa.RecordBatchReader):
        entity_df = entity_df.read_all()
    if _is_pandas(entity_df):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
        return _register_arrow(con, table, ts_column, "pandas DataFrame")
    if isinstance(entity_df, pa.Table):
        return _register_arrow(con, entity_df, ts_column, "Arrow table")
    if isinstance(entity_df, (str, os.PathLike)):
        text = os.fspath(entity_df)
        if text.endswith(".parquet") or Path(text).exists():
            path = Path(text)
            if not path.exists():
                raise InvalidRequestError(f"entity file {text} does not exist")
            if path.is_dir():
                raise InvalidRequestError(f"entity file {text} is a directory: give a Parquet file")
            # file_row_number keeps the file's order without reading it into memory.
            sql = (
                f"SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} "
                f"FROM read_parquet({literal(str(path))}, file_row_number = true)"
            )
            return _register_sql(con, sql, ts_column, str(path))
        return _register_arrow(con, query_entities(store, text, memory_limit), ts_column, "SQL query")
    raise InvalidRequestError(
        "entity_df must be a pandas DataFrame, a pyarrow Table, a Parquet path or a SQL query, "
        f"got {type(entity_df).__name__}"
    )


def query_entities(store: Path, sql: str, memory_limit: str | None = None) -> pa.Table:
    """The rows of one SELECT statement over the store's tables, read with no access to anything else.

    Anything but exactly one SELECT is refused before it runs (no stacked statements: a COPY
    after a SELECT would write a file), and the query runs in ``sandbox``, where reading a
    file, a URL or an extension fails.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise InvalidRequestError(f"cannot parse the entity query: {_first_line(e)}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        found = ", ".join(kinds) or "nothing"
        raise InvalidRequestError(f"a SQL entity_df must be exactly one SELECT statement, got {found}")
    with sandbox(store, memory_limit) as con:
        try:
            return con.sql(statements[0].query).to_arrow_table()
        except duckdb.PermissionException as e:
            raise InvalidRequestError(
                "a SQL entity_df may read only the store's tables, not files, URLs or extensions "
                f"(give a Parquet path or a DataFrame instead): {_first_line(e)}"
            ) from None
        except duckdb.Error as e:
            raise InvalidRequestError(f"cannot read the entity frame (SQL query): {_first_line(e)}") from None


def type_family(duckdb_type: str) -> str:
    """Join keys match when their families do: integers join integers, strings strings."""
    t = duckdb_type.upper()
    if t in _INTEGER:
        return "integer"
    if t.startswith("VARCHAR"):
        return "string"
    if t == "BLOB":
        return "bytes"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return t


def _register_arrow(
    con: duckdb.DuckDBPyConnection, table: pa.Table, ts_column: str, what: str
) -> EntityFrame:
    if ROW in table.column_names or TS in table.column_names:
        raise InvalidRequestError(f"entity frame columns {ROW!r} and {TS!r} are reserved")
    table = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    con.register("__fs_entity_input", table)
    return _register_sql(con, "SELECT * FROM __fs_entity_input", ts_column, what)


def _register_sql(con: duckdb.DuckDBPyConnection, sql: str, ts_column: str, what: str) -> EntityFrame:
    try:
        described = con.execute(f"DESCRIBE {sql}").fetchall()
    except duckdb.Error as e:
        raise InvalidRequestError(f"cannot read the entity frame ({what}): {_first_line(e)}") from None
    columns = {name: dtype for name, dtype, *_ in described if name != ROW}
    if ts_column not in columns:
        raise InvalidRequestError(
            f"entity frame has no {ts_column!r} column (the event time of each row); it has {list(columns)}"
        )
    if type_family(columns[ts_column]) != "timestamp":
        raise InvalidRequestError(
            f"entity frame column {ts_column!r} must be a timestamp, got {columns[ts_column]}"
        )
    # Naive timestamps are UTC: the connection's TimeZone is UTC, so the cast reads them so.
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {ENTITY_VIEW} AS "
        f"SELECT *, CAST({quote(ts_column)} AS TIMESTAMPTZ) AS {TS} FROM ({sql})"
    )
    return EntityFrame(columns, what)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and type(value).__name__ == "DataFrame"


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]
