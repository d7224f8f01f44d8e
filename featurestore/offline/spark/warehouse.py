"""The Spark engine's warehouse: the ingested rows of each view as immutable Parquet folders.

One folder per ingested version of a source file::

    WAREHOUSE/<project>/<view>/<view fingerprint[:16]>/<file id>-<content fingerprint[:16]>/part-*.parquet

holding exactly the columns (and Arrow types) of the DuckDB engine's ``offline_<view>`` table
(``stored_schema``). Folders are only ever added: a changed source file is a new folder, a
rebuilt view a new view folder; which folders are live is what ``offline_files`` records in
the DuckDB file (``live_dirs``), so a training set's manifest, which records the files'
fingerprints, names exactly the folders it read, and reproduces from them.

For a local warehouse, ``offline_<view>`` in DuckDB is a view over the live folders
(``publish``), so what reads the view's rows through DuckDB (statistics, drift, monitoring,
retractions) reads the same rows as Spark.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.offline.layout import CREATED_TS, EVENT_TS, FILE_ID, SEQ, stored_columns, view_table
from featurestore.storage import literal, quote

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
UTC_MICROS = pa.timestamp("us", tz="UTC")


def stored_schema(view: FeatureView) -> pa.Schema:
    """The columns of a view's ingested rows, in order: keys, reserved columns, features."""
    fields = [pa.field(k.name, k.dtype.arrow, nullable=False) for k in view.join_keys]
    fields += [
        pa.field(EVENT_TS, UTC_MICROS, nullable=False),
        pa.field(CREATED_TS, UTC_MICROS),
        pa.field(SEQ, pa.int64(), nullable=False),
        pa.field(FILE_ID, pa.int32(), nullable=False),
    ]
    fields += [pa.field(f.name, f.dtype.arrow) for f in view.columns]
    return pa.schema(fields)


def view_dir(warehouse: str, project: str, view: str, view_fingerprint: str) -> str:
    """The folder of one definition of a view (a changed definition writes a new one)."""
    return f"{warehouse.rstrip('/')}/{project}/{view}/{view_fingerprint[:16]}"


def file_dir(
    warehouse: str, project: str, view: str, view_fingerprint: str, file_id: int, fingerprint: str
) -> str:
    """The folder of one ingested version of one source file."""
    return f"{view_dir(warehouse, project, view, view_fingerprint)}/{file_id:06d}-{fingerprint[:16]}"


def is_local(warehouse: str) -> bool:
    """Whether the warehouse is a path on this machine (DuckDB can read it too)."""
    return not _URI.match(warehouse) or warehouse.startswith("file://")


def local_path(location: str) -> str:
    return location[len("file://") :] if location.startswith("file://") else location


def live_dirs(con: duckdb.DuckDBPyConnection, project: str, view: str, warehouse: str) -> list[str]:
    """The folders holding the view's rows now, in file id order ([] if never ingested)."""
    rows = con.execute(
        f"SELECT f.file_id, f.fingerprint, v.view_fingerprint FROM {quote(project)}.offline_files f "
        f"JOIN {quote(project)}.offline_views v USING (view) WHERE f.view = ? ORDER BY f.file_id",
        [view],
    ).fetchall()
    return [file_dir(warehouse, project, view, vfp, int(fid), fp) for fid, fp, vfp in rows]


def lost_dirs(con: duckdb.DuckDBPyConnection, project: str, view: str, warehouse: str) -> list[str]:
    """Live folders of a local warehouse that are gone (deleted by hand, a lost disk): the
    view is rebuilt from its sources by the next ingestion. A remote warehouse is not checked."""
    if not is_local(warehouse):
        return []
    return [d for d in live_dirs(con, project, view, warehouse) if is_lost(d)]


def is_lost(folder: str) -> bool:
    """A local warehouse folder without its data files (Spark writes at least one, even for no rows)."""
    return not any(Path(local_path(folder)).glob("*.parquet"))


def publish(con: duckdb.DuckDBPyConnection, project: str, view: FeatureView, dirs: list[str]) -> None:
    """Make ``offline_<view>`` in DuckDB a view over the live folders of a local warehouse."""
    table = view_table(project, view.name)
    if dirs:
        globs = ", ".join(literal(local_path(d) + "/*.parquet") for d in dirs)
        columns = ", ".join(quote(name) for name, _, _ in stored_columns(view))
        body = f"SELECT {columns} FROM read_parquet([{globs}])"
    else:  # no rows: the same columns, typed
        nulls = ", ".join(f"CAST(NULL AS {kind}) AS {quote(n)}" for n, kind, _ in stored_columns(view))
        body = f"SELECT {nulls} WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW {table} AS {body}")



def prune(
    con: duckdb.DuckDBPyConnection, project: str, warehouse: str, training_sets: Iterable[dict[str, Any]]
) -> int:
    """Delete the folders of a local warehouse that no view reads now and no recorded training
    set read (its manifest's ``warehouse`` lists them: ``reproduce`` needs them); how many.

    Runs on the caller's write connection: an ingestion writes its folders while it holds the
    file for writing, so none is half-written while this looks.
    """
    if not is_local(warehouse):
        return 0
    root = Path(local_path(warehouse)) / project
    if not root.is_dir():
        return 0
    keep: set[str] = set()
    for record in training_sets:
        for folders in (record.get("manifest", {}).get("warehouse") or {}).values():
            keep.update(local_path(f).rstrip("/") for f in folders)
    views = [str(r[0]) for r in con.execute(f"SELECT view FROM {quote(project)}.offline_views").fetchall()]
    for view in views:
        keep.update(local_path(d) for d in live_dirs(con, project, view, warehouse))
    deleted = 0
    for folder in sorted(root.glob("*/*/*")):  # <view>/<view fingerprint>/<file id>-<fingerprint>
        if folder.is_dir() and str(folder) not in keep:
            shutil.rmtree(folder)
            deleted += 1
    for parent in sorted(root.glob("*/*"), reverse=True) + sorted(root.glob("*"), reverse=True):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return deleted
