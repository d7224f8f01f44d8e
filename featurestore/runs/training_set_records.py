"""Training set records: an id, the manifest, a copy of the entity frame and the output's fingerprint.

Each ``to_parquet`` registers its training set under ``STORE/training_sets/ID/``:
``entities.parquet`` (the entity frame as given, so the set can be rebuilt) and
``manifest.json`` (the manifest embedded in the file, where it was written, the file's
content fingerprint and the ``statistics`` of each feature column, see
``featurestore.profiling``: computed over the written file, so neither embedded in it
nor part of the id). The id is a short hash of the manifest's stable parts, so the same
features over the same data and entity rows get the same id. These are plain files rather
than DuckDB rows because a TrainingSet holds a read-only connection to the store, and the
same process cannot open the store for writing meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import NotFoundError
from featurestore.fingerprints import file_fingerprint, size_of
from featurestore.outputs import write_text
from featurestore.profiling import output_statistics

if TYPE_CHECKING:
    from featurestore.runs import RunEvents

FOLDER = "training_sets"
ENTITIES = "entities.parquet"
RECORD = "manifest.json"
# Not hashed into the id: what the entity frame was ("pandas DataFrame", a path) is a label.
_UNHASHED = {"id", "entities"}


def training_set_id(manifest: dict[str, Any]) -> str:
    """A short content hash of the manifest's stable parts."""
    stable = {k: v for k, v in manifest.items() if k not in _UNHASHED}
    text = json.dumps(stable, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def folder(store_dir: Path, training_set: str) -> Path:
    return store_dir / FOLDER / training_set


@dataclass
class PendingRecord:
    """Between the entity copy and the output file: the manifest to embed, with its id."""

    manifest: dict[str, Any]
    entities: Path  # the copy, not yet in its folder
    started_at: datetime


@dataclass(frozen=True)
class TrainingSetRecorder:
    """Registers each training set ``TrainingSet.to_parquet`` writes (see the module docstring)."""

    store_dir: Path
    events: RunEvents | None = None

    def before_write(self, copy_entities: Callable[[Path], int], manifest: dict[str, Any]) -> PendingRecord:
        """Copy the entity frame, fingerprint it and give the manifest its id."""
        started_at = datetime.now(UTC)
        tmp = self.store_dir / FOLDER / f".entities-{uuid.uuid4().hex}.parquet"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        rows = copy_entities(tmp)
        full = {**manifest, "entity_fingerprint": file_fingerprint(tmp), "rows": rows}
        return PendingRecord({**full, "id": training_set_id(full)}, tmp, started_at)

    def after_write(self, pending: PendingRecord, output: Path) -> dict[str, Any]:
        """File the entity copy and the record; the manifest with the output's fingerprint."""
        manifest = pending.manifest
        where = folder(self.store_dir, manifest["id"])
        where.mkdir(parents=True, exist_ok=True)
        pending.entities.replace(where / ENTITIES)
        fingerprint = file_fingerprint(output)
        statistics = {s.name: s.to_dict() for s in output_statistics(output, manifest["columns"])}
        record = {
            "id": manifest["id"],
            "manifest": manifest,
            "output": {
                "path": str(output.resolve()),
                "fingerprint": fingerprint,
                "bytes": size_of(output),
            },
            "created_at": datetime.now(UTC).isoformat(),
            "statistics": statistics,
        }
        write_text(where / RECORD, json.dumps(record, indent=2, sort_keys=True, default=str))
        if self.events is not None:
            sources = [f["path"] for files in manifest["sources"].values() for f in files]
            self.events.run(
                "training_set",
                f"training-set-{manifest['id']}-{record['created_at']}",
                pending.started_at,
                datetime.now(UTC),
                "succeeded",
                [self.events.file(p) for p in [*sources, str(where / ENTITIES)]],
                [self.events.file(str(output.resolve()))],
            )
        return {**manifest, "output_fingerprint": fingerprint, "statistics": statistics}

    def discard(self, pending: PendingRecord) -> None:
        pending.entities.unlink(missing_ok=True)


def has_record(store_dir: Path, training_set: str) -> bool:
    """Whether a training set of this id is recorded."""
    if not training_set or os.sep in training_set:
        return False
    return (folder(store_dir, training_set) / RECORD).is_file()


def load_record(store_dir: Path, training_set: str) -> dict[str, Any]:
    """The record of a training set by id; NotFoundError names the known ones."""
    if not has_record(store_dir, training_set):
        known = ", ".join(sorted(r["id"] for r in list_records(store_dir))[:10]) or "none yet"
        raise NotFoundError(f"no training set {training_set!r} (known: {known})")
    record: dict[str, Any] = json.loads((folder(store_dir, training_set) / RECORD).read_text())
    return record


def list_records(store_dir: Path) -> list[dict[str, Any]]:
    """Every registered training set's record, oldest first."""
    base = store_dir / FOLDER
    if not base.is_dir():
        return []
    records = [json.loads(p.read_text()) for p in base.glob(f"*/{RECORD}")]
    return sorted(records, key=lambda r: (r["created_at"], r["id"]))
