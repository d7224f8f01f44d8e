"""What an ingestion sets aside beside the store (``STORE/quarantine``, ``STORE/validation``):
the invalid rows of a file, a copy of a file that is not readable Parquet, and the report of
a view refused under policy "fail". Each written atomically (rename)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.fingerprints import file_fingerprint
from featurestore.outputs import atomic_write, write_text
from featurestore.validation import ValidationReport, ViewReport

if TYPE_CHECKING:
    from featurestore.validation.validate import FileValidation


def rejection(report: ViewReport, store_dir: Path) -> ValidationError:
    """The error of a view that failed validation under policy "fail"; its report is kept."""
    keep_failed_report(store_dir, report)
    return ValidationError(report.summary() + " (policy 'fail': nothing was written for this view)", report)


def write_rows(store_dir: Path, view: str, path: str, fingerprint: str, result: FileValidation) -> Path:
    """The file's invalid rows with their reasons (``path`` a local path or a URI)."""
    assert result.quarantine is not None
    stem = PurePosixPath(path).stem
    target = store_dir / "quarantine" / view / f"{stem}-{fingerprint[:12]}.parquet"
    table = result.quarantine.append_column("__source_file", pa.array([path] * result.quarantine.num_rows))
    with atomic_write(target) as partial:
        pq.write_table(table, partial)
    return target


def copy_file(store_dir: Path, view: str, path: Path) -> Path:
    """A copy of a file that is not readable Parquet, beside the quarantined rows."""
    target = store_dir / "quarantine" / view / f"{path.name}-{file_fingerprint(path)[:12]}.unreadable"
    if not target.exists():
        with atomic_write(target) as partial:
            shutil.copyfile(path, partial)
    return target


def keep_failed_report(store_dir: Path, report: ViewReport) -> None:
    """A failed validation writes nothing to DuckDB; its report is kept beside the store."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = store_dir / "validation" / f"{report.view}-{stamp}-failed.json"
    write_text(target, ValidationReport([report]).to_json())


def failed_report(store_dir: Path, view: str, started: datetime, finished: datetime) -> dict[str, Any] | None:
    """The kept report of ``view``'s validation refused between ``started`` and ``finished``
    (a refused ingestion's record), with its example rows; None if it is gone."""
    folder = store_dir / "validation"
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"{view}-*-failed.json")):
        stamp = path.name.removeprefix(f"{view}-").removesuffix("-failed.json")
        try:
            written = datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        except ValueError:
            continue
        if started <= written <= finished:
            report: dict[str, Any] = json.loads(path.read_text())
            report["file"] = str(path)
            return report
    return None
