"""Prepare an ingestion: plan it, read each new or changed file's schema and validate its rows.

Reads only, so a failed validation leaves the DuckDB file as it was; ``write.py`` then
commits all of a view's changes in one transaction. ``FeatureStore.validate`` checks files
with the same step (``check_file``), writing nothing at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from featurestore.definitions import FeatureView
from featurestore.errors import SourceError
from featurestore.offline.plan import FilePlan, plan_files
from featurestore.source_files import SourceFiles
from featurestore.validation import FileReport, ViewReport

if TYPE_CHECKING:
    from featurestore.offline.offline_store import OfflineStore
    from featurestore.validation.validate import FileValidation

Progress = Callable[[str, int, int], None]  # (what, done, total)
Validator = Callable[[FeatureView, str, bool], "FileValidation"]  # (view, file, keep invalid rows)


@dataclass
class PreparedIngest:
    """What one view's ingestion will write, decided and validated without writing anything."""

    view: FeatureView
    files: FilePlan
    report: ViewReport
    checked: dict[str, FileValidation]
    seconds: float  # spent deciding and validating
    # Files that are not readable Parquet, set aside under policy
    # "quarantine": path -> why. A known one is treated as removed.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Invalid rows under policy "fail": nothing of the view may be written."""
        return not self.report.passed and self.view.on_invalid == "fail"


def prepare_view(
    store: OfflineStore,
    view: FeatureView,
    repo: Path,
    progress: Progress | None = None,
    with_checks: Callable[[FeatureView], FeatureView] | None = None,
    validate: Validator | None = None,
) -> PreparedIngest:
    """Decide which files changed and validate them; only reads, so a failure leaves the file as it was.

    ``with_checks`` gives the view its custom checks' functions; called only when a file needs
    validating, since it loads pandera and the repo's code. ``validate`` checks one file
    (default: ``validation.validate.validate_file`` here; the Spark engine passes its own).
    """
    started = time.perf_counter()
    plan = plan_files(store, view, repo)
    report = ViewReport(view.name, view.on_invalid)
    unreadable: dict[str, str] = {}
    for path in plan.added + plan.changed:  # check every file before writing anything
        try:
            schema = read_file_schema(path, view, store.source_files)
        except SourceError as e:  # not Parquet at all: set aside under "quarantine"
            if view.on_invalid != "quarantine":
                raise
            unreadable[path] = e.message
            report.files.append(FileReport(path, 0, 0, error=e.message))
            continue
        check_file_schema(path, view, schema)  # a drifted file stops the view, whatever the policy
    if unreadable:  # set aside: never ingested, and the rows an earlier version gave are taken away
        plan.added = [p for p in plan.added if p not in unreadable]
        plan.removed = sorted(
            plan.removed + [p for p in plan.changed if p in unreadable and not plan.rebuild]
        )
        plan.changed = [p for p in plan.changed if p not in unreadable]
    checked: dict[str, FileValidation] = {}
    todo = sorted(plan.added + plan.changed)
    if todo and validate is None:  # pandera (and pandas) load only when there is something to validate
        from featurestore.validation.validate import validate_file

        def validate(view: FeatureView, path: str, keep_invalid: bool) -> FileValidation:
            return validate_file(view, Path(path), keep_invalid)

    checking = with_checks(view) if todo and with_checks is not None else view
    for i, path in enumerate(todo):
        if progress:
            progress(f"{view.name}: validating {Path(path).name}", i, len(todo))
        assert validate is not None
        checked[path] = validate(checking, path, view.on_invalid == "quarantine")
        report.files.append(checked[path].report)
    return PreparedIngest(view, plan, report, checked, time.perf_counter() - started, unreadable)


def check_file(
    view: FeatureView, path: str, files: SourceFiles, validate: Validator | None = None
) -> FileReport:
    """One file's schema and rows against the view's declarations (a drifted schema raises
    SourceError); ``validate`` as for ``prepare_view`` (a remote file needs Spark's)."""
    check_file_schema(path, view, read_file_schema(path, view, files))
    if validate is None:
        from featurestore.validation.validate import validate_file  # pandera: only when validating

        return validate_file(view, Path(path)).report
    return validate(view, path, False).report


def read_file_schema(path: str, view: FeatureView, files: SourceFiles) -> pa.Schema:
    """The file's Parquet schema; SourceError if it is not readable Parquet."""
    try:
        return files.schema(path)
    except SourceError as e:  # a remote file: Spark's reason
        raise SourceError(f"feature view {view.name!r}: {e.message}") from None
    except (OSError, pa.ArrowException) as e:
        raise SourceError(
            f"feature view {view.name!r}: {path} is not a readable Parquet file ({' '.join(str(e).split())})"
        ) from None


def check_file_schema(path: str, view: FeatureView, schema: pa.Schema) -> None:
    """A column dropped or retyped in a file is caught before anything is written."""
    src = view.source
    expected: list[tuple[str, str, Callable[[pa.DataType], bool]]] = [
        (k.name, k.dtype.name, k.dtype.accepts) for k in view.join_keys
    ]
    expected += [(src.timestamp_field, "Timestamp", pa.types.is_timestamp)]
    if src.created_timestamp_field:
        expected += [(src.created_timestamp_field, "Timestamp", pa.types.is_timestamp)]
    expected += [(f.name, f.dtype.name, f.dtype.accepts) for f in view.columns]
    for name, dtype, accepts in expected:
        idx = schema.get_field_index(name)
        if idx < 0:
            raise SourceError(
                f"feature view {view.name!r}: {path} has no column {name!r} (declared {dtype}); "
                f"the file has {', '.join(schema.names)}"
            )
        if not accepts(schema.field(idx).type):
            raise SourceError(
                f"feature view {view.name!r}: column {name!r} of {path} is {schema.field(idx).type}, "
                f"declared {dtype}"
            )
