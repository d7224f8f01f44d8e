"""TrainingSet: a point-in-time correct training set, computed by DuckDB on demand."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.config import Config
from featurestore.definitions.types import pandas_frame
from featurestore.errors import InvalidRequestError, NotAppliedError
from featurestore.offline.entities import ENTITY_VIEW, ROW, TS, EntityFrame, register_entities
from featurestore.offline.feature_log import TIME_COLUMN, FeatureLog, logged_entities
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.on_demand import OnDemandColumns
from featurestore.offline.pit import OutputColumn, point_in_time_sql
from featurestore.on_demand import OnDemandFunctions
from featurestore.outputs import OutputGuard, atomic_write
from featurestore.registry import Snapshot, ViewRequest
from featurestore.registry.snapshot import Expanded
from featurestore.storage import connect, quote

if TYPE_CHECKING:
    import pandas as pd

    from featurestore.offline.spark.training_set import SparkTrainingSet

MANIFEST_KEY = "featurestore.manifest"
HIDDEN_PREFIX = "__input__"  # joined columns only on-demand views read; never in the output


class Recorder(Protocol):
    """Registers what ``to_parquet`` writes (lineage): gives the manifest its id, files the record."""

    def before_write(self, copy_entities: Callable[[Path], int], manifest: dict[str, Any]) -> Any:
        """``copy_entities(path)`` writes the entity frame there as Parquet and answers its rows."""
        ...

    def after_write(self, pending: Any, output: Path) -> dict[str, Any]: ...

    def discard(self, pending: Any) -> None: ...


class TrainingSet:
    """The result of ``get_training_set``; nothing runs until an output method is called.

    Holds a read connection to the store until ``close()`` (or the end of a ``with`` block).
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        manifest: dict[str, Any],
        guard: OutputGuard,
        recorder: Recorder | None = None,
        on_demand: OnDemandColumns | None = None,
    ) -> None:
        self._con = con
        self.sql = sql
        self.manifest = manifest
        self._guard = guard
        self._recorder = recorder
        # On-demand features: computed on each batch of the join (None: the join is the set).
        self._on_demand = on_demand

    def to_arrow(self) -> pa.Table:
        """The whole training set in memory."""
        if self._on_demand is not None:
            return pa.Table.from_batches(list(self.to_batches()), self._schema())
        return self._con.sql(self.sql).to_arrow_table()

    def _schema(self) -> pa.Schema:
        joined = self._con.sql(f"SELECT * FROM ({self.sql}) LIMIT 0").to_arrow_table().schema
        return joined if self._on_demand is None else self._on_demand.schema(joined)

    def to_pandas(self) -> pd.DataFrame:
        """The whole training set as a DataFrame with Arrow-backed dtypes (nulls keep the type)."""
        return pandas_frame(self.to_arrow())

    def to_batches(self, batch_size: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Stream the training set in input order without holding it all in memory."""
        reader = self._con.sql(self.sql).to_arrow_reader(batch_size)
        if self._on_demand is None:
            yield from reader
            return
        for batch in reader:
            yield self._on_demand(batch)

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write it with DuckDB (out of core), the manifest in the file's metadata.

        The file appears complete or not at all: it is written beside and renamed. A path
        inside the store's folder or one a source reads is refused (InvalidRequestError). With
        a recorder (``FeatureStore.get_training_set``), the training set is registered and
        ``manifest`` gains its ``id``, ``entity_fingerprint``, ``rows`` and ``output_fingerprint``.
        """
        target = self._guard.check(path)
        if self._recorder is None:
            return self.write(target, self.manifest)
        pending = self._recorder.before_write(self._copy_entities, self.manifest)
        try:
            self.write(target, pending.manifest)
        except BaseException:
            self._recorder.discard(pending)
            raise
        self.manifest = self._recorder.after_write(pending, target)
        return target

    def _copy_entities(self, path: Path) -> int:
        """The entity frame as given (its rows in order, without the join's own columns), as Parquet."""
        row = self._con.execute(
            f"COPY (SELECT * EXCLUDE ({ROW}, {TS}) FROM {ENTITY_VIEW} ORDER BY {ROW}) TO ? (FORMAT parquet)",
            [str(path)],
        ).fetchall()
        return int(row[0][0])

    def write(self, target: Path, manifest: dict[str, Any]) -> Path:
        """Write the file with exactly this manifest embedded (``reproduce`` passes the recorded one)."""
        target = self._guard.check(target)
        metadata = {MANIFEST_KEY: json.dumps(manifest, sort_keys=True, default=str)}
        with atomic_write(target) as partial:
            if self._on_demand is not None:  # computed in Python: written batch by batch
                schema = self._schema().with_metadata(metadata)
                with pq.ParquetWriter(partial, schema) as writer:
                    for batch in self.to_batches():
                        writer.write_batch(batch)
                return target
            self._con.execute(
                f"COPY ({self.sql}) TO ? (FORMAT parquet, KV_METADATA ?)", [str(partial), metadata]
            )
        return target

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> TrainingSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_training_set(
    config: Config,
    snapshot: Snapshot,
    registry_version: int,
    entity_df: Any,
    features: Sequence[str] | str,
    full_feature_names: bool = False,
    event_timestamp_column: str | None = None,
    recorder: Recorder | None = None,
    served_only: bool = False,
) -> TrainingSet | SparkTrainingSet:
    """Resolve features, check the entity frame against them and prepare the query.

    ``entity_df`` may be a ``FeatureLog``: its served features are taken from the log, the
    others computed (see offline/feature_log.py). Outputs may not go into the store's folder
    or over a file a source of ``snapshot`` reads. ``served_only``: no features is fine (the
    copy of a feature log's entity frame holds them all; ``reproduce`` passes it).
    """
    if served_only and not features:
        expanded, requests = Expanded((), (), (), frozenset()), []
    else:
        expanded = snapshot.expand(features)
        requests = snapshot.resolve(list(expanded.refs))
    logged = None
    if isinstance(entity_df, FeatureLog):
        if config.offline_engine == "spark":  # its manifest and lineage would not name the log
            raise InvalidRequestError(
                "a FeatureLog entity frame needs the duckdb offline engine ([offline] engine = "
                "\"duckdb\"): the Spark engine does not read feature logs yet"
            )
        # On-demand features come from the log as served: the inputs only they read are not needed.
        asked = [
            ViewRequest(r.view, fs)
            for r in requests
            if (fs := tuple(f for f in r.features if f"{r.view.name}:{f.name}" not in expanded.hidden))
        ]
        logged = logged_entities(entity_df, asked, full_feature_names, expanded.on_demand)
        entity_df, requests, event_timestamp_column = logged.table, logged.offline, TIME_COLUMN
        expanded = Expanded(expanded.requested, expanded.refs, (), frozenset())
    if not config.duckdb_path.exists():
        raise NotAppliedError("nothing ingested yet: run 'featurestore materialize --offline'")
    ts_column = event_timestamp_column or config.event_timestamp_column
    guard = OutputGuard(config.store_dir, config.repo, tuple(snapshot.sources.values()))
    con = connect(config.duckdb_path, read_only=True, memory_limit=config.memory_limit)
    if config.offline_engine == "spark":
        if expanded.on_demand:
            con.close()
            raise InvalidRequestError(
                f"on-demand features ({[r.view.name for r in expanded.on_demand]}) are not supported "
                'on the Spark engine yet: use [offline] engine = "duckdb" for this training set'
            )
        from featurestore.offline.spark.training_set import build_spark_training_set

        with con:  # Spark reads the warehouse; the store only says which folders are live
            check_ingested(con, config.project, requests)
            return build_spark_training_set(
                config, con, registry_version, requests, entity_df, full_feature_names, ts_column,
                guard, recorder,
            )
    try:
        check_ingested(con, config.project, requests)
        frame = register_entities(con, entity_df, ts_column, config.duckdb_path, config.memory_limit)
        if logged is not None:
            frame = replace(frame, description=f"feature log {logged.manifest['path']}")
        check_keys(requests, frame)
        outputs = output_columns(requests, list(frame.columns), full_feature_names, expanded.hidden)
        sql = point_in_time_sql(config.project, list(frame.columns), requests, outputs)
        on_demand = None
        if expanded.on_demand:
            on_demand = _on_demand_columns(
                con, config, expanded, requests, outputs, frame, full_feature_names
            )
        manifest = make_manifest(con, config.project, registry_version, requests, outputs, frame.description)
        if on_demand is not None:  # the features asked for, in request order, as lookups answer them
            manifest["features"] = [ref for _, ref in on_demand.columns]
            manifest["columns"] = on_demand.names
            manifest["on_demand_views"] = {r.view.name: r.view.fingerprint for r in expanded.on_demand}
        # What a rebuild needs besides the features: how columns were named, which was the time.
        manifest.update(full_feature_names=full_feature_names, event_timestamp_column=ts_column)
        if logged is not None:
            manifest["feature_log"] = logged.manifest
    except BaseException:
        con.close()
        raise
    return TrainingSet(con, sql, manifest, guard, recorder, on_demand)


def _on_demand_columns(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    expanded: Expanded,
    requests: Sequence[ViewRequest],
    outputs: Sequence[OutputColumn],
    frame: EntityFrame,
    full_feature_names: bool,
) -> OnDemandColumns:
    """How the join's batches get their on-demand columns; the functions from the repo's code."""
    fields = {f"{r.view.name}:{f.name}": f for r in requests for f in r.features}
    inputs = {f"{o.view}:{o.feature}": (o.name, fields[f"{o.view}:{o.feature}"]) for o in outputs}
    taken = {c: "the entity frame" for c in frame.columns}
    taken.update({o.name: f"feature view {o.view!r}" for o in outputs})
    entity_schema = con.sql(f"SELECT * FROM {ENTITY_VIEW} LIMIT 0").to_arrow_table().schema
    functions = OnDemandFunctions(config.repo, {r.view.name: r.view for r in expanded.on_demand})
    return OnDemandColumns(expanded, functions, inputs, entity_schema, taken, full_feature_names)


def check_keys(requests: Sequence[ViewRequest], frame: EntityFrame) -> None:
    """Every view's join keys are entity columns of a type they join (integers of any width)."""
    for req in requests:
        for key in req.view.join_keys:
            if key.name not in frame.columns:
                raise InvalidRequestError(
                    f"entity frame has no column {key.name!r}, the join key of feature view "
                    f"{req.view.name!r}"
                )
            want = "integer" if key.dtype.name in ("Int32", "Int64") else key.dtype.name.lower()
            if frame.key_family(key.name) != want:
                raise InvalidRequestError(
                    f"entity frame column {key.name!r} is {frame.columns[key.name]}, but feature "
                    f"view {req.view.name!r} joins on it as {key.dtype.name}"
                )


def check_ingested(con: duckdb.DuckDBPyConnection, project: str, requests: Sequence[ViewRequest]) -> None:
    offline = OfflineStore(con, project)
    for req in requests:
        found = offline.ingested_fingerprint(req.view.name)
        if found is None:
            raise NotAppliedError(
                f"feature view {req.view.name!r} has not been ingested: "
                "run 'featurestore materialize --offline'"
            )
        if found != req.view.fingerprint:
            raise NotAppliedError(
                f"feature view {req.view.name!r} changed since it was ingested: "
                "run 'featurestore materialize --offline'"
            )


def output_columns(
    requests: Sequence[ViewRequest],
    entity_columns: list[str],
    full_names: bool,
    hidden: frozenset[str] = frozenset(),
) -> list[OutputColumn]:
    """The joined columns; ``hidden`` features (read only by on-demand views) get private names."""
    outputs: list[OutputColumn] = []
    taken = {c: "the entity frame" for c in entity_columns}
    for req in requests:
        for f in req.features:
            if f"{req.view.name}:{f.name}" in hidden:
                hidden_name = f"{HIDDEN_PREFIX}{req.view.name}__{f.name}"
                outputs.append(OutputColumn(hidden_name, req.view.name, f.name))
                continue
            name = f"{req.view.name}__{f.name}" if full_names else f.name
            if name in taken:
                hint = "" if full_names else "; pass full_feature_names=True"
                raise InvalidRequestError(
                    f"feature {req.view.name}:{f.name} would be named {name!r}, "
                    f"which {taken[name]} already has{hint}"
                )
            taken[name] = f"feature view {req.view.name!r}"
            outputs.append(OutputColumn(name, req.view.name, f.name))
    return outputs


def make_manifest(
    con: duckdb.DuckDBPyConnection,
    project: str,
    registry_version: int,
    requests: Sequence[ViewRequest],
    outputs: Sequence[OutputColumn],
    entities: str,
) -> dict[str, Any]:
    sources: dict[str, list[dict[str, Any]]] = {}
    for req in requests:
        rows = con.execute(
            f"SELECT path, size, fingerprint, rows FROM {quote(project)}.offline_files "
            "WHERE view = ? ORDER BY path",
            [req.view.name],
        ).fetchall()
        sources[req.view.name] = [
            {"path": p, "size": s, "fingerprint": fp, "rows": n} for p, s, fp, n in rows
        ]
    return {
        "project": project,
        "registry_version": registry_version,
        "features": [f"{o.view}:{o.feature}" for o in outputs],
        "columns": [o.name for o in outputs],
        "views": {r.view.name: r.view.fingerprint for r in requests},
        "sources": sources,
        "entities": entities,
    }
