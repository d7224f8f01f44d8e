"""A request log as a training set's entity frame: train on what the model actually saw.

``get_training_set(FeatureLog(folder), features)`` builds one row per logged (request,
entity) -- every request that served at least one of ``features`` -- with:

- the entity's join keys, ``request_time`` (the row's event time, so offline features are
  point in time at the moment of the request), ``request_id``, ``entity_index`` (the
  entity's position in its request) and the request data the caller sent, one column each;
- for each of ``features`` found in the log: the value served, typed as declared, and
  ``<column>__status`` (PRESENT, NULL_VALUE, NOT_FOUND, EXPIRED, CORRUPT; null where that
  request did not ask for the feature);
- every other feature computed offline, point in time at ``request_time``, as for any
  entity frame.

On-demand features are taken from the log as served (computed at request time), never
recomputed: each must be in the log, and no file of the first format (``format_version`` 1,
written before on-demand features were logged) may hold requests of the window, since whether
its requests were answered any is unknown.

The log's columns come first, then the offline ones. The manifest's ``feature_log`` names
the files read, the served features, the runs that wrote the served values and how many
requests the server dropped (queue full) before the files, so a training set says how
complete its log was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.errors import InvalidRequestError, NotFoundError
from featurestore.offline.request_log_format import (
    FORMAT_VERSION,
    SCHEMA,
    column_from_json,
    dropped_before,
    format_version,
)
from featurestore.registry import ViewRequest
from featurestore.registry.snapshot import OnDemandRequest
from featurestore.storage import literal, quote

TIME_COLUMN = "request_time"
STATUS_SUFFIX = "__status"
_LOG_COLUMNS = (TIME_COLUMN, "request_id", "entity_index")
_DUCKDB = {"int64": "BIGINT", "string": "VARCHAR"}  # the types of the columns added to the format


@dataclass(frozen=True)
class FeatureLog:
    """The request log files in ``path`` (``[request_log] path``), of requests at or after
    ``start`` and before ``end``, as an entity frame for ``get_training_set``."""

    path: str | os.PathLike[str]
    start: datetime | None = None
    end: datetime | None = None

    def files(self) -> list[Path]:
        """The log's complete files (``*.parquet``; never a ``.partial`` one being written)."""
        folder = Path(self.path)
        if not folder.is_dir():
            raise NotFoundError(f"feature log folder {folder} does not exist")
        files = sorted(folder.rglob("*.parquet"))
        if not files:
            raise NotFoundError(f"no request log files (*.parquet) in {folder}")
        return files


@dataclass(frozen=True)
class LoggedEntities:
    """What ``logged_entities`` makes of a log: the entity frame and what is left to compute."""

    table: pa.Table
    offline: list[ViewRequest]  # features not in the log: computed point in time
    manifest: dict[str, Any]


def logged_entities(
    feature_log: FeatureLog,
    requests: Sequence[ViewRequest],
    full_feature_names: bool,
    on_demand: Sequence[OnDemandRequest] = (),
) -> LoggedEntities:
    """The entity frame of ``feature_log`` for the features of ``requests`` (served if logged,
    else left to compute) and of ``on_demand`` (served: each must be in the log)."""
    files = feature_log.files()
    wanted = {f"{r.view.name}:{f.name}": f.dtype for r in requests for f in r.features}
    wanted.update({f"{r.view.name}:{f.name}": f.dtype for r in on_demand for f in r.features})
    computed = [f"{r.view.name}:{f.name}" for r in on_demand for f in r.features]
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB reads the files (only the rows of the features asked for reach memory); a
        # column older files lack is null (union_by_name), or null typed if no file has it.
        present = {name for f in files for name in pq.read_schema(f).names}
        selected = ", ".join(
            quote(c) if c in present else f"CAST(NULL AS {_DUCKDB[str(SCHEMA.field(c).type)]}) AS {quote(c)}"
            for c in SCHEMA.names
        )
        paths = ", ".join(literal(str(f)) for f in files)
        con.execute(
            f"CREATE TEMP VIEW log AS SELECT {selected} FROM read_parquet([{paths}], union_by_name = true)"
        )
        window: list[str] = []
        params: list[Any] = []
        if feature_log.start is not None:
            window.append("request_time >= ?")
            params.append(feature_log.start)
        if feature_log.end is not None:
            window.append("request_time < ?")
            params.append(feature_log.end)
        if computed:
            _check_on_demand_logged(con, feature_log, files, window, params)
        where = ["feature IN (SELECT unnest(?))", *window]
        rows = con.sql(
            f"SELECT * FROM log WHERE {' AND '.join(where)}", params=[list(wanted), *params]
        ).to_arrow_table()
        found = set(pc.unique(rows.column("feature")).to_pylist())
        served = [ref for ref in wanted if ref in found]
        if not served:
            raise InvalidRequestError(
                f"the feature log in {feature_log.path} holds no served values of {sorted(wanted)}"
                + _between(feature_log)
            )
        missing = [ref for ref in computed if ref not in found]
        if missing:
            raise InvalidRequestError(
                f"the feature log in {feature_log.path} holds no served values of on-demand "
                f"feature(s) {missing}{_between(feature_log)}: on-demand features are taken from "
                "the log only; for values never served, build the training set from an entity "
                "frame (with the request fields as columns) instead"
            )
        con.register("served", rows)
        picks = []
        for i, ref in enumerate(served):
            is_ref = f"feature = {literal(ref)}"
            picks += [
                f"any_value(value_json) FILTER (WHERE {is_ref}) AS v{i}",
                f"any_value(status) FILTER (WHERE {is_ref}) AS s{i}",
                f"any_value(run_id) FILTER (WHERE {is_ref}) AS r{i}",
            ]
        # One row per (request, entity); a caller's request id may repeat, its time and transport tell.
        pivot = con.sql(
            "SELECT request_time, request_id, entity_index, any_value(entity_json) AS entity_json, "
            f"any_value(request_json) AS request_json, {', '.join(picks)} FROM served "
            "GROUP BY request_time, request_id, transport, entity_index "
            "ORDER BY request_time, request_id, transport, entity_index"
        ).to_arrow_table()
    columns = _keys(pivot, requests)
    for name in _LOG_COLUMNS:
        columns[name] = pivot.column(name)
    _add_request_data(columns, pivot)
    runs: dict[str, set[int]] = {}
    for i, ref in enumerate(served):
        dtype = wanted[ref]
        view, feature = ref.split(":", 1)
        name = f"{view}__{feature}" if full_feature_names else feature
        for taken in (name, name + STATUS_SUFFIX):
            if taken in columns:
                raise InvalidRequestError(
                    f"served feature {ref} would be named {taken!r}, which the feature log's columns "
                    "already have; pass full_feature_names=True"
                )
        columns[name] = column_from_json(pivot.column(f"v{i}").to_pylist(), dtype)
        columns[name + STATUS_SUFFIX] = pivot.column(f"s{i}")
        runs.setdefault(view, set()).update(r for r in pivot.column(f"r{i}").to_pylist() if r is not None)
    offline = [
        ViewRequest(r.view, rest)
        for r in requests
        if (rest := tuple(f for f in r.features if f"{r.view.name}:{f.name}" not in served))
    ]
    manifest = {
        "path": str(Path(feature_log.path).resolve()),
        "start": None if feature_log.start is None else feature_log.start.isoformat(),
        "end": None if feature_log.end is None else feature_log.end.isoformat(),
        "files": [{"path": str(f.relative_to(feature_log.path)), "size": f.stat().st_size} for f in files],
        "served": served,
        "runs": {view: sorted(ids) for view, ids in sorted(runs.items()) if ids},
        "dropped_requests": sum(dropped_before(f) for f in files),
        "rows": pivot.num_rows,
    }
    return LoggedEntities(pa.table(columns), offline, manifest)


def _check_on_demand_logged(
    con: duckdb.DuckDBPyConnection,
    feature_log: FeatureLog,
    files: list[Path],
    window: list[str],
    params: list[Any],
) -> None:
    """No file of the first format holds requests of the window: their on-demand values are unknown."""
    old = [f for f in files if format_version(f) < FORMAT_VERSION]
    if not old:
        return
    paths = ", ".join(literal(str(f)) for f in old)
    count, newest = con.execute(
        f"SELECT count(*), max(request_time) FROM read_parquet([{paths}]) "
        f"WHERE {' AND '.join(window) or 'true'}",
        params,
    ).fetchall()[0]
    if count:
        raise InvalidRequestError(
            f"{len(old)} request log file(s) in {feature_log.path} (e.g. {old[0].name}) were written "
            "before on-demand features were logged, so which on-demand values their requests were "
            f"served is unknown; pass FeatureLog(start=...) after their newest request ({newest}), "
            "or move them out of the folder"
        )


def _between(feature_log: FeatureLog) -> str:
    if feature_log.start is None and feature_log.end is None:
        return ""
    return f" between {feature_log.start or 'the start'} and {feature_log.end or 'the end'}"


def _keys(pivot: pa.Table, requests: Sequence[ViewRequest]) -> dict[str, Any]:
    """Join key columns, typed as the views join them."""
    key_types = {k.name: k.dtype for r in requests for k in r.view.join_keys}
    entities = [json.loads(e) for e in pivot.column("entity_json").to_pylist()]
    names = sorted({k for e in entities for k in e}, key=lambda k: (k not in key_types, k))
    columns: dict[str, Any] = {}
    for k in names:
        values = [e.get(k) for e in entities]
        dtype = key_types.get(k)
        arrow = dtype.arrow if dtype is not None else _inferred(values)
        columns[k] = pa.array(values, arrow)
    return columns


def _add_request_data(columns: dict[str, Any], pivot: pa.Table) -> None:
    """One column per request data field."""
    data = [json.loads(r) if r is not None else {} for r in pivot.column("request_json").to_pylist()]
    for k in sorted({k for d in data for k in d}):
        if k in columns:
            raise InvalidRequestError(
                f"request data field {k!r} has the name of a join key or of a feature log column"
            )
        values = [d.get(k) for d in data]
        try:
            columns[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: kept as their JSON text
            columns[k] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())


def _inferred(values: list[Any]) -> pa.DataType:
    return pa.int64() if all(isinstance(v, int) for v in values if v is not None) else pa.string()
