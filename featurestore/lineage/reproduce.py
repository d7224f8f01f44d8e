"""Rebuild a recorded training set and check it is the same, byte for byte.

Before rebuilding, every source file the training set read is compared with the manifest
(removed, added or changed files are named), then the data ingested in the store; the
rebuild uses the recorded registry version, entity frame copy and options, and writes the
recorded manifest verbatim, so an unchanged training set comes back with the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from featurestore.config import Config
from featurestore.errors import SourceError
from featurestore.fingerprints import file_fingerprint
from featurestore.offline.plan import source_files_for, view_files
from featurestore.offline.training_set import build_training_set
from featurestore.registry import Snapshot
from featurestore.runs.training_set_records import ENTITIES, folder, load_record
from featurestore.source_files import SourceFile, SourceFiles


@dataclass(frozen=True)
class ReproduceResult:
    """What ``reproduce`` wrote and whether it is the recorded training set."""

    training_set: str
    path: Path
    fingerprint: str
    expected: str
    changes: list[str] = field(default_factory=list)  # why it may differ (only with force)

    @property
    def identical(self) -> bool:
        return self.fingerprint == self.expected


def file_changes(
    view: str,
    recorded: list[dict[str, Any]],
    on_disk: list[SourceFile],
    files: SourceFiles,
    hashes: dict[tuple[str, int, float], str] | None = None,
) -> list[str]:
    """Each source file of ``view`` removed, added or changed since ``recorded`` (path, size, fingerprint).

    ``hashes`` caches fingerprints by (path, size, mtime) across calls, so a file read by
    several training sets is hashed once.
    """
    hashes = {} if hashes is None else hashes
    before = {str(f["path"]): f for f in recorded}
    now = {f.path: f for f in on_disk}
    changes = []
    for path in sorted(before.keys() | now.keys()):
        if path not in now:
            changes.append(f"view {view!r}: source file {path} was removed")
        elif path not in before:
            changes.append(f"view {view!r}: source file {path} was added")
        else:
            old, file = before[path], now[path]
            key = (path, file.size, file.mtime)
            if file.size == old["size"] and key not in hashes:
                hashes[key] = files.fingerprint(file)
            if file.size != old["size"] or hashes[key] != old["fingerprint"]:
                changes.append(f"view {view!r}: source file {path} changed")
    return changes


def source_changes(
    manifest: dict[str, Any],
    snapshot: Snapshot,
    repo: Path,
    files: SourceFiles,
    store_dir: Path | None = None,
) -> list[str]:
    """Every source file the training set read (pushed ones too) now removed, added or changed."""
    changes = []
    for view, recorded in sorted(manifest["sources"].items()):
        definition = snapshot.views.get(view)
        on_disk = view_files(definition, repo, files, store_dir) if definition is not None else []
        changes += file_changes(view, recorded, on_disk, files)
    return changes


def reproduce(
    config: Config, snapshot: Snapshot, training_set: str, out: Path, force: bool = False
) -> ReproduceResult:
    """Rebuild ``training_set`` into ``out``; refuses when its sources changed unless ``force``."""
    record = load_record(config.store_dir, training_set)
    manifest: dict[str, Any] = record["manifest"]
    changes = source_changes(
        manifest, snapshot, config.repo, source_files_for(config.spark_engine), config.store_dir
    )
    entities = folder(config.store_dir, training_set) / ENTITIES
    if not entities.is_file() or file_fingerprint(entities) != manifest["entity_fingerprint"]:
        changes.append(f"its entity frame copy {entities} is missing or changed")
    _refuse_unless(force, training_set, changes)
    # DuckDB marks columns read from Parquet without nulls as required in what it writes, and
    # columns of an in-memory frame (a SQL query's rows are one too) as optional: the copy is
    # handed over in the original's form.
    # A feature log's rows are built in memory too.
    in_memory = manifest["entities"] in ("pandas DataFrame", "Arrow table", "SQL query") or str(
        manifest["entities"]
    ).startswith("feature log ")
    with build_training_set(
        config,
        snapshot,
        int(manifest["registry_version"]),
        pq.read_table(entities) if in_memory else entities,
        list(manifest["features"]),
        bool(manifest["full_feature_names"]),
        str(manifest["event_timestamp_column"]),
        served_only="feature_log" in manifest,
    ) as ts:
        # Files on disk may match while the store holds other data (changed, ingested, reverted).
        for view, files in sorted(ts.manifest["sources"].items()):
            recorded = {(f["path"], f["fingerprint"]) for f in manifest["sources"].get(view, [])}
            if {(f["path"], f["fingerprint"]) for f in files} != recorded:
                changes.append(
                    f"view {view!r}: the data ingested in the store differs from what the training set "
                    "read (run 'featurestore materialize --offline' after restoring its files)"
                )
        _refuse_unless(force, training_set, changes)
        if changes:  # forced: say truthfully what this file was built from
            written = {**ts.manifest, "reproduces": training_set}
        else:
            written = manifest
        ts.write(out, written)
    return ReproduceResult(training_set, out, file_fingerprint(out), record["output"]["fingerprint"], changes)


def _refuse_unless(force: bool, training_set: str, changes: list[str]) -> None:
    if changes and not force:
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        raise SourceError(
            f"training set {training_set}: {changes[0]}{more} since it was built, so it cannot be "
            "rebuilt exactly; pass --force (force=True) to rebuild from the data in the store"
        )


