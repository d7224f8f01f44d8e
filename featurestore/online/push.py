"""Push: rows written to a view durably offline and at once online, without a materialization.

A batch goes through four steps, and the first failure stops it:

1. **Bounded and typed.** At most ``MAX_PUSH_ROWS`` rows and ``MAX_PUSH_BYTES`` bytes; the
   columns are exactly the view's join keys, its source's event time (and created time, which
   may be left out), and its features, cast safely to their declared types.
2. **Validated** with the view's pandera schema (``validation.validate.validate_batch``, the
   same as ingestion): one invalid row (a null key or event time included) and the whole
   batch is refused with every failing cell, before anything is written.
3. **Offline, durable**: appended to the view's push log (``offline/push_log.py``), which the
   view's ingestion reads after its source's files, so training sets see the rows once ingested.
4. **Online, at once**: written to Redis newer-wins, as materialization writes (a pushed row
   older than the stored value never replaces it), under the run id ``PUSHED_RUN_ID``; rows
   already past the view's TTL are not written (counted as ``expired``).

Offline comes first: if Redis then fails, the rows are still durable and the next
materialization writes them online; if the offline write fails, nothing is written online.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.config import Config
from featurestore.definitions import FeatureView
from featurestore.definitions.types import DType, Timestamp
from featurestore.errors import (
    InvalidRequestError,
    InvalidRowsError,
    NotFoundError,
    OnlineStoreUnavailable,
    PushLogUnavailable,
    PushTargetNotFoundError,
)
from featurestore.offline import push_log
from featurestore.offline.layout import CREATED_TS, EVENT_TS
from featurestore.online.codec import PUSHED_RUN_ID, ViewCodec
from featurestore.online.materialize import encode_rows
from featurestore.online.store import OnlineStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from featurestore.online.lookup import OnlineRegistry

# One push at most: larger batches go through files (a source, or several pushes).
MAX_PUSH_ROWS = 100_000
MAX_PUSH_BYTES = 64 * 2**20
_SHOWN_ERRORS = 10  # failing cells named in the message; ``InvalidRowsError.rows`` has all
# A view's pandera schema, built once per view object (a registry version holds its views):
# building one deep-copies every column and took ~1.7 ms of a one-row push's ~11 ms.
_schemas: weakref.WeakKeyDictionary[FeatureView, Any] = weakref.WeakKeyDictionary()
_schemas_lock = threading.Lock()


@dataclass(frozen=True)
class PushResult:
    """What a push did: its rows are in ``file`` (offline) and were written online as counted."""

    view: str
    rows: int
    file: Path  # the push log file holding the rows
    written: int = 0  # online values written
    kept_newer: int = 0  # rows not written online: Redis held a newer value for their entity
    expired: int = 0  # rows not written online: older than the view's TTL
    seconds: float = 0.0


def push_rows(
    project: str,
    view: FeatureView,
    rows: Any,
    store_dir: Path,
    online: OnlineStore | None,
    with_checks: Callable[[FeatureView], FeatureView] | None = None,
    now: datetime | None = None,
    duckdb_path: Path | None = None,
) -> PushResult:
    """Validate ``rows`` (a pyarrow Table or pandas DataFrame) for ``view``, append them to its
    push log, then write them online (``online``: None for a view that is not online). An
    aggregation view's tiles are recomputed from the store file at ``duckdb_path``
    (push_tiles.py): ``written`` counts the rows in a value written, ``expired`` the rows
    past every window."""
    began = time.perf_counter()
    table = typed_batch(view, rows)
    validate(with_checks(view) if with_checks is not None else view, table)
    path = push_log.append(store_dir, view.name, table)
    result = PushResult(view.name, table.num_rows, path)
    if online is not None and view.online:
        if view.aggregations:
            if duckdb_path is None:
                raise InvalidRequestError(f"push to aggregation view {view.name!r}: no store file given")
            written = _write_online_tiles(project, view, table, online, result, store_dir, duckdb_path, now)
            result = replace(result, written=written, expired=table.num_rows - written)
        else:
            result = _write_online(project, view, table, online, result, now or datetime.now(UTC))
    return replace(result, seconds=time.perf_counter() - began)


class Pusher:
    """The pushes of one process (``FeatureStore.push``, ``serve``'s transports, the CLI): the
    view from the registry it holds, the repo's check functions, one Redis connection.

    Thread safe: a server runs pushes in worker threads, since each writes a file with fsync.
    """

    def __init__(
        self,
        config: Config,
        registry: Callable[[], OnlineRegistry],
        socket_timeout: float | None = None,  # None: the online store's default
    ) -> None:
        self.config = config
        self.registry = registry
        self.socket_timeout = socket_timeout
        self.with_checks = repo_check_functions(config.repo)
        self._online: OnlineStore | None = None
        self._lock = threading.Lock()

    def view(self, name: str, registry: OnlineRegistry | None = None) -> FeatureView:
        """The applied feature view ``name`` (in ``registry``, default the latest held);
        PushTargetNotFoundError if there is none."""
        try:
            view: FeatureView = (registry or self.registry()).snapshot.get("feature_view", name)
        except NotFoundError as e:
            raise PushTargetNotFoundError(e.message) from None
        return view

    def push(self, view: str | FeatureView, rows: Any) -> PushResult:
        """``push_rows`` for the view named ``view``; a failed file write is PushLogUnavailable."""
        if self.config.offline_engine == "spark":
            raise InvalidRequestError(
                "push is not supported on the Spark engine yet: its push log lives in the store's "
                'local folder, which Spark\'s executors may not reach (use [offline] engine = "duckdb")'
            )
        definition = self.view(view) if isinstance(view, str) else view
        online = self.online() if definition.online else None
        try:
            return push_rows(
                self.config.project,
                definition,
                rows,
                self.config.store_dir,
                online,
                self.with_checks,
                duckdb_path=self.config.duckdb_path,
            )
        except OSError as e:  # only the push log touches files; Redis errors are ours already
            raise PushLogUnavailable(
                f"push to feature view {definition.name!r}: the push log under "
                f"{self.config.store_dir} cannot be written, nothing of the batch was written: "
                f"{e.strerror or e}"
            ) from e

    def online(self) -> OnlineStore:
        with self._lock:
            if self._online is None:
                extra = {} if self.socket_timeout is None else {"socket_timeout": self.socket_timeout}
                self._online = OnlineStore.connect(
                    self.config.redis_url, self.config.project, check=False, client_name=None, **extra
                )
            return self._online

    def close(self) -> None:
        with self._lock:
            if self._online is not None:
                self._online.close()
                self._online = None


def repo_check_functions(repo: Path) -> Callable[[FeatureView], FeatureView]:
    """Gives an applied view its custom checks' functions (stored by name only) from the repo's code.

    The repo is loaded at most once, and only if a view to validate has such checks.
    """
    defined: dict[str, FeatureView] | None = None
    lock = threading.Lock()
    plain: weakref.WeakSet[FeatureView] = weakref.WeakSet()  # seen without custom checks

    def with_checks(view: FeatureView) -> FeatureView:
        nonlocal defined
        from featurestore.repo import load_repo
        from featurestore.validation.schema import has_custom_checks, with_check_functions

        if view in plain:  # reading every check's spec again took ~0.3 ms of a push
            return view
        if not has_custom_checks(view):
            plain.add(view)
            return view
        with lock:
            if defined is None:
                defined = load_repo(repo).views
        return with_check_functions(view, defined.get(view.name))

    return with_checks


def declared_columns(view: FeatureView) -> list[tuple[str, DType, bool]]:
    """(name, type, required) of each column a pushed batch holds, in the push log's order."""
    src = view.source
    columns = [(k.name, k.dtype, True) for k in view.join_keys]
    columns.append((src.timestamp_field, Timestamp, True))
    if src.created_timestamp_field:
        columns.append((src.created_timestamp_field, Timestamp, False))
    return columns + [(f.name, f.dtype, True) for f in view.columns]


def typed_batch(view: FeatureView, rows: Any) -> pa.Table:
    """``rows`` as an Arrow table of the view's declared columns and types; InvalidRequestError
    naming the column that is missing, extra or not safely castable, or the limit passed."""
    what = f"push to feature view {view.name!r}"
    n = _row_count(rows, what)
    if n == 0:
        raise InvalidRequestError(f"{what}: the batch has no rows")
    if n > MAX_PUSH_ROWS:
        raise InvalidRequestError(f"{what}: {n:,} rows, more than the limit of {MAX_PUSH_ROWS:,} per push")
    table = _as_arrow(rows, what)
    if table.nbytes > MAX_PUSH_BYTES:
        raise InvalidRequestError(
            f"{what}: {table.nbytes:,} bytes, more than the limit of {MAX_PUSH_BYTES:,} per push"
        )
    declared = declared_columns(view)
    names = [name for name, _, _ in declared]
    extra = [c for c in table.column_names if c not in names]
    if extra:
        raise InvalidRequestError(
            f"{what}: column(s) {', '.join(map(repr, extra))} are not declared by the view "
            f"(it takes {', '.join(names)})"
        )
    if len(set(table.column_names)) != len(table.column_names):
        raise InvalidRequestError(f"{what}: a column name appears twice")
    columns, fields = [], []
    for name, dtype, required in declared:
        if name in table.column_names:
            columns.append(_cast(table.column(name), name, dtype, what))
        elif required:
            raise InvalidRequestError(f"{what}: column {name!r} (declared {dtype.name}) is missing")
        else:  # no created time: it loses ties, as a source without one does
            columns.append(pa.nulls(table.num_rows, dtype.arrow))
        fields.append(pa.field(name, dtype.arrow))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields)).combine_chunks()


def validate(view: FeatureView, table: pa.Table) -> None:
    """The view's pandera checks over the batch; InvalidRowsError listing every failing cell."""
    from featurestore.validation.quick import certainly_valid
    from featurestore.validation.schema import pandera_schema  # pandera: only when pushing
    from featurestore.validation.validate import validate_batch

    batch = _one_batch(table)
    if certainly_valid(view, batch):  # pandera would pass it too, ~20 times slower
        return

    with _schemas_lock:
        schema = _schemas.get(view)
        if schema is None:
            schema = _schemas[view] = pandera_schema(view)
    judged = validate_batch(view, schema, batch, np.arange(batch.num_rows))
    if not judged.cells:
        return
    shown = "; ".join(
        f"row {row}: {f'column {column!r} failed ' if column else ''}{check}"
        for row, column, check in judged.cells[:_SHOWN_ERRORS]
    )
    more = len(judged.cells) - _SHOWN_ERRORS
    raise InvalidRowsError(
        f"push to feature view {view.name!r} refused, nothing written: "
        f"{len(judged.invalid_rows):,} of {batch.num_rows:,} row(s) invalid: {shown}"
        + (f"; and {more} more" if more > 0 else ""),
        judged.cells,
    )


def _write_online(
    project: str, view: FeatureView, table: pa.Table, online: OnlineStore, result: PushResult, now: datetime
) -> PushResult:
    src = view.source
    columns = {k.name: table.column(k.name) for k in view.join_keys}
    columns[EVENT_TS] = table.column(src.timestamp_field)
    created = src.created_timestamp_field
    columns[CREATED_TS] = table.column(created) if created else pa.nulls(table.num_rows, Timestamp.arrow)
    columns.update({f.name: table.column(f.name) for f in view.features})
    batch = _one_batch(pa.table(columns))
    keys, values, expire_at = encode_rows(project, view, ViewCodec(view), batch, PUSHED_RUN_ID, now)
    try:
        written = online.write(keys, values, expire_at) if keys else 0
    except OnlineStoreUnavailable as e:
        raise _not_online(view, result, e) from e
    return PushResult(
        view.name,
        result.rows,
        result.file,
        written=written,
        kept_newer=len(keys) - written,
        expired=batch.num_rows - len(keys),
    )


def _write_online_tiles(
    project: str,
    view: FeatureView,
    table: pa.Table,
    online: OnlineStore,
    result: PushResult,
    store_dir: Path,
    duckdb_path: Path,
    now: datetime | None,
) -> int:
    from featurestore.online.push_tiles import write_pushed_tiles

    try:
        at = now or datetime.now(UTC)
        return write_pushed_tiles(project, view, table, duckdb_path, store_dir, online, at)
    except OnlineStoreUnavailable as e:
        raise _not_online(view, result, e) from e


def _not_online(view: FeatureView, result: PushResult, e: OnlineStoreUnavailable) -> OnlineStoreUnavailable:
    """The error of a push durable offline whose Redis write failed: the same promise to a
    server's caller, without the paths and Redis address."""
    error = OnlineStoreUnavailable(
        f"push to feature view {view.name!r}: the {result.rows:,} row(s) are durable offline "
        f"({result.file}) but were not written online, the next materialization writes them: "
        f"{e.message}",
        e.config_problem,
    )
    error.client_message = (
        f"push to feature view {view.name!r}: the {result.rows:,} row(s) are durable offline but "
        "were not written online (the online store is unavailable); the next materialization "
        "writes them, pushing them again is not needed"
    )
    return error


def _row_count(rows: Any, what: str) -> int:
    if isinstance(rows, pa.Table | pa.RecordBatch):
        return int(rows.num_rows)
    if type(rows).__module__.startswith("pandas") and hasattr(rows, "columns"):
        return len(rows)
    raise InvalidRequestError(
        f"{what}: rows must be a pyarrow Table or a pandas DataFrame, not {type(rows).__name__}"
    )


def _as_arrow(rows: Any, what: str) -> pa.Table:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    try:
        return pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as e:
        raise InvalidRequestError(f"{what}: the DataFrame cannot be read as Arrow: {e}") from None


def _cast(column: pa.ChunkedArray, name: str, dtype: DType, what: str) -> pa.ChunkedArray:
    """Only casts that keep every value: same kind of type, or number to number without loss."""
    source = column.type
    if source == dtype.arrow:
        return column
    numeric = _is_number(source) and _is_number(dtype.arrow)
    if not (pa.types.is_null(source) or dtype.accepts(source) or numeric):
        raise InvalidRequestError(f"{what}: column {name!r} is {source}, declared {dtype.name}")
    try:
        return pc.cast(column, dtype.arrow, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        reason = " ".join(str(e).split())
        raise InvalidRequestError(
            f"{what}: column {name!r} is {source} and does not cast to {dtype.name} without loss ({reason})"
        ) from None


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if len(batches) == 1 else pa.RecordBatch.from_pylist([], schema=table.schema)
